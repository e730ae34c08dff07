#!/usr/bin/env bash
# End-to-end checks of the `g4` binary on the default model: every subcommand runs, prints
# what it promises, and bad input gives a clear error with a non-zero exit (never a crash).
# Usage: cli_test.sh PATH_TO_G4
set -u
G4=$1
pass=0
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check() {  # name, then a command that must succeed
  local name=$1
  shift
  if "$@" >"$tmp/out" 2>"$tmp/err"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: $name"
    sed 's/^/  stdout: /' "$tmp/out" | head -5
    sed 's/^/  stderr: /' "$tmp/err" | head -5
  fi
}

# `g4 run --raw PROMPT` echoes the prompt, then streams the completion: checks of what the
# model says look only at the part after the prompt, and the prompt does not hold the answer.
after_prompt() {  # FILE PROMPT: FILE's text after PROMPT; fails if FILE does not start with it
  local out
  out=$(cat "$1")
  [ "${out:0:${#2}}" = "$2" ] && printf '%s' "${out:${#2}}"
}
export -f after_prompt
ASK='The capital of France is the city of'

MODEL=$("$G4" pull 2>/dev/null)
check "pull prints the cached model path" test -f "$MODEL"

check "run --raw streams a greedy completion that answers" bash -c \
  "'$G4' run --raw --temp 0 -n 12 -t 2 '$ASK' > '$tmp/run.txt' 2> '$tmp/run.err' &&
   after_prompt '$tmp/run.txt' '$ASK' | grep -q Paris && grep -q 'time to first token' '$tmp/run.err'"
check "run is deterministic for a seed" bash -c \
  "a=\$('$G4' run --raw --seed 7 -n 16 -t 2 'Once upon a time' 2>/dev/null);
   b=\$('$G4' run --raw --seed 7 -n 16 -t 2 'Once upon a time' 2>/dev/null); [ \"\$a\" = \"\$b\" ]"
check "run says once that a base model completes plain text" bash -c \
  "'$G4' run -n 4 -t 2 'Hello' 2>&1 >/dev/null | grep -c 'base model' | grep -qx 1"
# The prompt comes before --stop, which takes every value after it (a prompt there would be
# read as a second stop string). Without the stop string the completion says France; with it,
# the completion is exactly the text before that.
check "run stops at a stop string" bash -c \
  "p='The capital of France is Paris. The capital of';
   '$G4' run --raw --temp 0 -n 40 -t 2 \"\$p\" > '$tmp/full.txt' 2>/dev/null &&
   '$G4' run --raw --temp 0 -n 40 -t 2 \"\$p\" --stop France > '$tmp/cut.txt' 2>/dev/null &&
   full=\$(after_prompt '$tmp/full.txt' \"\$p\") && cut=\$(after_prompt '$tmp/cut.txt' \"\$p\") &&
   [[ \$full == *France* ]] && [[ \$cut != *France* ]] && [ \"\$cut\" = \"\${full%%France*}\" ]"
check "run rejects a bad sampling parameter" bash -c "! '$G4' run --raw --top-p 0 -n 1 hi 2>/dev/null"
check "tokenize --json" bash -c "[ \"\$('$G4' tokenize --json -m '$MODEL' 'Hello world' 2>/dev/null)\" = '[2,9259,1902]' ]"
G4TOK=$(cd "$(dirname "$0")/../golden/gemma4_tok" && pwd)
check "tokenize: Gemma 4 tokenizer.json and GGUF give the same ids" bash -c \
  "a=\$('$G4' tokenize --json --tokenizer-json '$G4TOK/tokenizer.json' 'Hello  world <|turn>' 2>/dev/null);
   b=\$('$G4' tokenize --json -m '$G4TOK/tokenizer.gguf' 'Hello  world <|turn>' 2>/dev/null);
   [ -n \"\$a\" ] && [ \"\$a\" = \"\$b\" ]"
check "tokenize --tokenizer-json rejects a non-BPE file" bash -c \
  "echo '{\"model\":{\"type\":\"Unigram\"}}' > '$tmp/bad.json';
   ! '$G4' tokenize --tokenizer-json '$tmp/bad.json' x 2>'$tmp/bad.err' && grep -q 'not supported' '$tmp/bad.err'"
check "inspect shows the tensor table" bash -c "'$G4' inspect '$MODEL' | grep -q 'token_embd.weight'"
# The KV block accounting of the default model at its 32768 positions: 3 global layers x K+V x
# 256 x fp16 = 3 KiB per position, blocks of 256 positions = 0.75 MiB, 128 of them = 96 MiB.
check "inspect shows the KV block accounting" bash -c "'$G4' inspect '$MODEL' > '$tmp/insp' &&
  grep -q 'global    3 layers  paged: blocks of 256 positions, 0.75 MiB each' '$tmp/insp' &&
  grep -q '128 blocks = 96.0 MiB; 3.0 KiB per position' '$tmp/insp' &&
  grep -q 'sliding  15 layers  rings of' '$tmp/insp'"
check "logits prints top-K JSON" bash -c \
  "'$G4' logits '$MODEL' --ids 2,9259 --top 3 -t 2 | python3 -c 'import json,sys; d=json.load(sys.stdin); assert len(d[\"positions\"][0][\"top\"])==3'"
check "logits rejects bad ids" bash -c "! '$G4' logits '$MODEL' --ids 2,x -t 2 2>/dev/null"
check "perplexity runs a chunk" bash -c \
  "'$G4' perplexity '$MODEL' /usr/share/common-licenses/Apache-2.0 --ctx 64 --chunks 2 -t 2 2>/dev/null | grep -q '^perplexity: '"
# The AVX2 kernels give the AVX-512 kernels' bits (R16 packed GEMM and one-token kernels, the
# attention paths), so a perplexity run's NLL is the same to the last digit on either ISA (and
# the capped run really ran AVX2: g4 bench reports the ISA it used).
check "perplexity: G4_ISA=avx2 gives AVX-512's numbers exactly" bash -c \
  "'$G4' perplexity '$MODEL' /usr/share/common-licenses/Apache-2.0 --ctx 256 --chunks 2 -t 2 --json > '$tmp/p512' 2>/dev/null &&
   G4_ISA=avx2 '$G4' perplexity '$MODEL' /usr/share/common-licenses/Apache-2.0 --ctx 256 --chunks 2 -t 2 --json > '$tmp/p2' 2>/dev/null &&
   grep -q nll_sum '$tmp/p2' && cmp -s '$tmp/p512' '$tmp/p2' &&
   G4_ISA=avx2 '$G4' bench -p 8 -n 1 -r 1 -t 2 --json 2>/dev/null | grep -q '\"isa\":\"avx2\"'"
check "bench --json" bash -c "'$G4' bench -p 16 -n 4 -r 1 -t 2 --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"tg\"][\"tokens_per_s\"] > 0'"
check "bench --batch" bash -c "'$G4' bench -p 0 -n 4 -b 3 -r 1 -t 2 --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"tg\"][\"batch\"] == 3 and d[\"tg\"][\"tokens_per_s\"] > 0'"
check "bench --depth" bash -c "'$G4' bench -d 600 -p 16 -n 4 -b 2 -r 1 -t 2 --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"depth\"] == 600 and d[\"pp\"][\"tokens_per_s\"] > 0 and d[\"tg\"][\"tokens_per_s\"] > 0'"
check "bench --kv-fill random, sparse, q4_0 KV" bash -c "'$G4' bench -d 5000 -p 0 -n 4 -r 1 -t 2 --kv-fill random --sparse --kv-type q4_0 --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"kv_fill\"] == \"random\" and d[\"kv_type\"] == \"q4_0\" and d[\"sparse\"] and d[\"kv_bytes\"] > 0 and d[\"tg\"][\"tokens_per_s\"] > 0'"
check "bench -d past the context" bash -c "out=\$('$G4' bench -d 40000 -p 0 -n 4 -r 1 -t 2 --kv-fill random 2>&1); test \$? -eq 1 && echo \"\$out\" | grep -q 'the model.s is 32768'"
# Needle in a haystack, a fixed-seed sample of `g4 eval niah` (the default model found all 30
# needles of 1K/4K/8K x 5 depths x 2 trials when measured, 2026-12-07): every needle here too.
check "eval niah" bash -c "'$G4' eval niah --ctx 1024,2048 --depths 0,50,100 --seed 1 -t 2 --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); assert len(d[\"samples\"]) == 6 and d[\"accuracy\"] == 1.0, d[\"samples\"]'"
check "--sparse-budget takes a share or a count, and says what it takes" bash -c \
  "'$G4' bench -d 5000 -p 0 -n 2 -r 1 -t 2 --kv-fill random --sparse --sparse-budget 10% --json >/dev/null 2>&1 &&
   '$G4' bench -d 5000 -p 0 -n 2 -r 1 -t 2 --kv-fill random --sparse --sparse-budget 1024 --json >/dev/null 2>&1 &&
   ! '$G4' bench -d 5000 -p 0 -n 2 --sparse --sparse-budget 0% 2>'$tmp/sb.err' && grep -q 'share of the context' '$tmp/sb.err' &&
   ! '$G4' bench -d 5000 -p 0 -n 2 --sparse --sparse-budget 12x 2>/dev/null &&
   ! '$G4' bench -d 5000 -p 0 -n 2 --sparse --sparse-budget 100 2>/dev/null"
check "eval niah bad depth" bash -c "! '$G4' eval niah --depths 150 2>/dev/null"
# Dense vs sparse compares share each prompt's prefill (one engine, routing switched per
# answer): the same answers as two engines (kv=f16, the default, makes the variants differ in
# more than routing, so they run separately).
check "eval niah --compare shares the prefill" bash -c \
  "'$G4' eval niah --ctx 1024 --depths 0,50,100 -t 2 --json --compare attn=dense:attn=sparse,budget=256,min_ctx=256 2>'$tmp/sh.err' >'$tmp/sh.json' &&
   grep -q 'share each prompt' '$tmp/sh.err' &&
   '$G4' eval niah --ctx 1024 --depths 0,50,100 -t 2 --json --compare attn=dense,kv=f16:attn=sparse,budget=256,min_ctx=256,kv=f16 2>'$tmp/sep.err' >'$tmp/sep.json' &&
   ! grep -q 'share each prompt' '$tmp/sep.err' &&
   python3 -c 'import json,sys; a=json.load(open(sys.argv[1]))[\"samples\"]; b=json.load(open(sys.argv[2]))[\"samples\"]; assert len(a) == 3 and [(x[\"output_a\"], x[\"output_b\"]) for x in a] == [(x[\"output_a\"], x[\"output_b\"]) for x in b], (a, b)' '$tmp/sh.json' '$tmp/sep.json'"
# RULER-style suite, a fixed-seed sample (the default model scored 1.0 on these 4 cases and
# 1.0 on both tasks' 3 samples at 1K when measured, 2026-12-07; a small slip is tolerated).
check "eval ruler" bash -c "'$G4' eval ruler --ctx 1024 --tasks niah_single,niah_multivalue --samples 2 --seed 1 -t 2 --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); assert len(d[\"samples\"]) == 4 and d[\"mean\"] >= 0.9, d[\"samples\"]'"
check "eval ruler bad task and variant" bash -c \
  "! '$G4' eval ruler --tasks nope 2>'$tmp/ruler.err' && grep -q 'unknown task' '$tmp/ruler.err' &&
   ! '$G4' eval ruler --compare kv=f16:nosuchkey=on 2>'$tmp/ruler.err' && grep -q 'unknown engine variant key' '$tmp/ruler.err'"
# g4 plan: the default model's KV at 8K is 3 global layers x 3 KiB/token (f16) and 15 rings
# of 1024 slots; a preset with a budget says whether it fits; bad arguments are clear errors.
check "plan on the default model" bash -c "'$G4' plan '$MODEL' --ctx 8192 --json | python3 -c 'import json,sys; d=json.load(sys.stdin); k=d[\"kv\"][\"layer_types\"]; assert k[0][\"layers\"] == 3 and k[0][\"bytes\"] == 3072 * 8192 and k[1][\"bytes\"] == 15 * 1024 * 1024 and d[\"total_bytes\"] > d[\"weights\"][\"resident_bytes\"] > 0'"
check "plan a preset against a budget" bash -c "'$G4' plan gemma4-e2b --ctx 32768 --parallel 4 --kv-type q8_0 --budget 16GiB | grep -q '^budget 16.00 GiB: fits' && '$G4' plan brief-270b --budget 16GiB | grep -q 'does not fit'"
check "plan rejects a bad budget and an unknown preset" bash -c \
  "! '$G4' plan gemma4-e2b --budget 16XB 2> '$tmp/plan.err' && grep -q 'bad size' '$tmp/plan.err' &&
   ! '$G4' plan gemma9-1b 2> '$tmp/plan.err' && grep -q 'neither a file nor a preset' '$tmp/plan.err' &&
   ! '$G4' plan gemma4-e2b --ctx 0 2>/dev/null"
# --profile splits a decode step into the op layer's phases for every architecture (a phase
# the model does not have stays 0): the default Gemma 3 model, then tiny Gemma 4 MoE and PLE
# models whose MoE / per-layer-embedding phases must show time.
PHASES='["embedding, RoPE tables", "norms, residuals", "q/k/v", "q/k norm, RoPE, KV store", "attention", "o proj", "gate/up + GELU", "down", "MoE router + experts", "per-layer embeddings", "LM head"]'
profile_has() {  # MODEL PHASE-THAT-MUST-BE-POSITIVE
  "$G4" bench "$1" -p 0 -n 4 -r 1 -t 2 --profile --json | python3 -c "
import json, sys
p = json.load(sys.stdin)['tg']['profile_ms_per_step']
assert sorted(p) == sorted($PHASES), p
assert p['$2'] > 0 and p['LM head'] > 0 and min(p.values()) >= 0, p"
}
check "bench --profile (Gemma 3)" profile_has "$MODEL" "gate/up + GELU"
printf 'GGUF\x03\x00\x00\x00' > "$tmp/short.gguf"
check "a truncated file is one clear error, exit 1" bash -c \
  "'$G4' inspect '$tmp/short.gguf' 2> '$tmp/e'; rc=\$?; [ \$rc = 1 ] && grep -q 'not a GGUF file' '$tmp/e'"
check "a missing file is an error" bash -c "! '$G4' run -m /nonexistent.gguf hi 2>/dev/null"
check "a non-GGUF file is an error" bash -c "'$G4' inspect /etc/hostname 2>&1 | grep -q 'not a GGUF file'"

# g4 inspect --moe-stats on the tiny 26B-A4B-like MoE: per-layer counts sum to tokens x top-k and
# equal the routing of transformers' own router (tiny_26b_like_routes.json, made by
# scripts/gen_tiny_gemma4_routes.py; --exact = the float32 function the reference computes).
TINY4=$(cd "$(dirname "$0")/../golden/tiny_gemma4" && pwd)
check "bench --profile (Gemma 4 MoE)" profile_has "$TINY4/tiny_26b_like.gguf" "MoE router + experts"
check "bench --profile (Gemma 4 per-layer embeddings)" profile_has "$TINY4/tiny_e2b_like.gguf" "per-layer embeddings"
check "inspect --moe-stats counts equal transformers' router choices" python3 -c "
import json, subprocess
ref = json.load(open('$TINY4/tiny_26b_like_routes.json'))
for p in ref['prompts']:
    out = subprocess.run(['$G4', 'inspect', '$TINY4/tiny_26b_like.gguf', '--moe-stats', '--json',
                          '--exact', '-t', '2', '--ids', ','.join(map(str, p['ids']))],
                         capture_output=True, text=True, check=True).stdout
    g = json.loads(out)
    assert g['n_tokens'] == len(p['ids']) and len(g['layers']) == len(p['layers'])
    for gl, rl in zip(g['layers'], p['layers']):
        assert sum(gl['counts']) == len(p['ids']) * ref['n_experts_used'], gl
        assert gl['counts'] == rl['counts'], (gl['counts'], rl['counts'])
"
check "inspect --moe-stats prints a load table" bash -c \
  "'$G4' inspect '$TINY4/tiny_26b_like.gguf' --moe-stats --ids 2,40,50,60 -t 2 > '$tmp/moe.txt' &&
   grep -q 'max/mean' '$tmp/moe.txt' && grep -q '16 experts, top-4' '$tmp/moe.txt' &&
   [ \$(grep -cE '^ +[0-9]+ +[0-9.]+ ' '$tmp/moe.txt') = 6 ]"
check "inspect --moe-stats on a dense model is one clear error" bash -c \
  "'$G4' inspect '$MODEL' --moe-stats --ids 2,3 2> '$tmp/e'; rc=\$?; [ \$rc = 1 ] && grep -q 'dense model' '$tmp/e'"
check "inspect --ids without --moe-stats is a usage error" bash -c \
  "'$G4' inspect '$TINY4/tiny_26b_like.gguf' --ids 2 2> '$tmp/e'; [ \$? = 2 ] && grep -q 'moe-stats' '$tmp/e'"

# g4 quantize and perplexity --kld.
check "quantize writes a q8_0 file and prints the type summary" bash -c \
  "'$G4' quantize '$MODEL' '$tmp/q8.gguf' --type q8_0 -t 2 2>/dev/null | grep -q '127 Q8_0' &&
   '$G4' inspect '$tmp/q8.gguf' | grep -q 'Q8_0'"
check "a quantized file runs and answers" bash -c \
  "'$G4' run --raw --temp 0 -n 4 -t 2 -m '$tmp/q8.gguf' '$ASK' > '$tmp/q8run.txt' 2>/dev/null &&
   after_prompt '$tmp/q8run.txt' '$ASK' | grep -q Paris"
check "perplexity --kld reports KL and top-1 agreement" bash -c \
  "'$G4' perplexity '$tmp/q8.gguf' /usr/share/common-licenses/Apache-2.0 --ctx 64 --chunks 1 -t 2 --kld '$MODEL' 2>/dev/null |
   grep -q 'top-1 agreement with the base'"
check "perplexity --kld rejects a base with another vocabulary" bash -c \
  "'$G4' perplexity '$tmp/q8.gguf' /usr/share/common-licenses/Apache-2.0 --ctx 64 --chunks 1 -t 2 \
     --kld '$(dirname "$0")/../golden/tiny/tiny_1b_like.gguf' 2>&1 >/dev/null | grep -q 'different vocabularies'"
check "quantize rejects an unknown type" bash -c \
  "'$G4' quantize '$MODEL' '$tmp/x.gguf' --type q3_k 2> '$tmp/e'; rc=\$?;
   [ \$rc = 1 ] && grep -q 'unsupported quantization type' '$tmp/e' && [ ! -e '$tmp/x.gguf' ]"
check "quantize refuses to overwrite its input" bash -c \
  "cp '$tmp/q8.gguf' '$tmp/same.gguf' && ! '$G4' quantize '$tmp/same.gguf' '$tmp/same.gguf' --type q4_0 2> '$tmp/e' &&
   grep -q 'same file' '$tmp/e' && ln -s '$tmp/same.gguf' '$tmp/link.gguf' &&
   ! '$G4' quantize '$tmp/same.gguf' '$tmp/link.gguf' --type q4_0 2>/dev/null && cmp -s '$tmp/q8.gguf' '$tmp/same.gguf'"
check "quantize reports an unwritable output" bash -c \
  "'$G4' quantize '$MODEL' /nonexistent-dir/out.gguf --type q8_0 2>&1 | grep -q 'cannot write'"
check "quantize reports a bad input" bash -c \
  "'$G4' quantize /etc/hostname '$tmp/x.gguf' --type q8_0 2>&1 | grep -q 'not a GGUF file' && [ ! -e '$tmp/x.gguf' ]"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
