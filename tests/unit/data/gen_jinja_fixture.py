"""Golden renderings for g4's Jinja subset (src/tokenizer/jinja.*), produced by Python's jinja2
configured the way transformers' apply_chat_template configures it (ImmutableSandboxedEnvironment,
trim_blocks and lstrip_blocks on, the loopcontrols extension, raise_exception and transformers'
tojson). Regenerate with:

    /work/h1/.venv/bin/python tests/unit/data/gen_jinja_fixture.py

Writes tests/unit/data/jinja_expected.json, read by tests/unit/jinja_test.cc, which renders every
case with g4 and compares byte for byte (error cases: g4 must return an error, and for
raise_exception the message must carry the template's text).

Templates:
  gemma3      /work/shared/testdata/gemma3/tokenizer_config.json `chat_template` (Gemma 3 it)
  gemma4      /work/shared/testdata/gemma4/chat-template-31B-it.jinja (Gemma 4 31B it)
  shieldgemma tests/unit/data/shieldgemma_chat_template.jinja: ShieldGemma's prompt as a chat
              template taking `guideline`. Not the checkpoint's own file: google/shieldgemma-*'s
              tokenizer_config.json could not be retrieved offline (searched public code and pages
              for its text, e.g. "Our safety principle is defined in the below"; found only the
              prompt as documented on the model card, https://huggingface.co/google/shieldgemma-2b
              "How to prompt ShieldGemma", and copies of that prompt in third-party code), so it is
              written from the model card's documented prompt.
  reworded    a ShieldGemma-style template with other wording (guard test: prompts follow it)
  guard_compact  the compact template of scripts/gen_guard_fixture.py as Jinja (tiny model)
  micro_*     small templates for single features (filters, tests, loops, macros, whitespace).
Expected values all come from jinja2; none is written by hand.
"""
import json
from pathlib import Path

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests/unit/data"
SHARED = Path("/work/shared/testdata")
OUT = DATA / "jinja_expected.json"
COMMAND = "/work/h1/.venv/bin/python tests/unit/data/gen_jinja_fixture.py"


def make_env():
    # transformers/utils/chat_template_utils.py: _compile_jinja_template
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


REWORDED = (
    "{{ bos_token }}"
    "{% if messages | length == 1 %}"
    "Screen this request.\n<start_of_turn>\nRequest: {{ messages[0]['content'] }}\n<end_of_turn>\n"
    "Rule: {{ guideline }}\nIs the request against the rule? Say Yes or No.\n"
    "{% else %}"
    "Screen this reply.\n<start_of_turn>\nRequest: {{ messages[0]['content'] }}\n<end_of_turn>\n"
    "<start_of_turn>\nReply: {{ messages[1]['content'] }}\n<end_of_turn>\n"
    "Rule: {{ guideline }}\nIs the reply against the rule? Say Yes or No.\n"
    "{% endif %}"
)

# scripts/gen_guard_fixture.py's compact template (guard_expected.json "template") as Jinja.
GUARD_COMPACT = (
    "{{ bos_token }}"
    "{% if messages | length == 1 %}"
    "Policy check.\n<start_of_turn>\nQ: {{ messages[0]['content'] }}\n<end_of_turn>\n"
    "Rule:\n* {{ guideline }}\n===\nDoes the question break the rule? Yes or No.\n"
    "{% else %}"
    "Policy check of a reply.\n<start_of_turn>\nQ: {{ messages[0]['content'] }}\n<end_of_turn>\n"
    "<start_of_turn>\nR: {{ messages[1]['content'] }}\n<end_of_turn>\n"
    "Rule:\n* {{ guideline }}\n===\nDoes the reply break the rule? Yes or No.\n"
    "{% endif %}"
)

MICRO = {
    "micro_whitespace": "a\n  {% if x %}\n    yes\n  {% endif %}\nb {{- ' c ' -}} d\n{# note #}\n"
                        "  {%- for i in [1,2] %} {{ i }}{% endfor +%}\n  {%+ if x %}k{% endif %}\n",
    "micro_literals": "{{ 'a\\tb\\n\\'q\\' \\u00e9\\x41' }}|{{ \"dq\" }}|{{ 1 + 2 * 3 }}|{{ 7 // 2 }}|"
                      "{{ -7 // 2 }}|{{ -7 % 3 }}|{{ 7 / 2 }}|{{ 2 ** 10 }}|{{ 1.5e3 }}|{{ 0.1 + 0.2 }}|"
                      "{{ 1e-7 }}|{{ 1e22 }}|{{ 10 / 5 }}|{{ true }}|{{ none }}|{{ [1, 'a', none, true] }}|"
                      "{{ {'k': 'v', 'n': 1} }}|{{ (1, 2) }}|{{ 'x' ~ 1 ~ none }}|{{ 3 - 1.5 }}|"
                      "{{ 'ab' * 3 }}|{{ [1] + [2] }}",
    "micro_access": "{{ m.role }}|{{ m['content'] }}|{{ m.missing }}|{{ l[1] }}|{{ l[-1] }}|"
                    "{{ l[1:] }}|{{ l[:2] }}|{{ l[::-1] }}|{{ l[::2] }}|{{ s[1:3] }}|{{ s[::-1] }}|"
                    "{{ s[-2:] }}|{{ l[10] }}|{{ m.get('role') }}|{{ m.get('nope', 'dflt') }}|"
                    "{{ m.get('nope') }}|{{ s[0] }}",
    "micro_logic": "{{ 1 < 2 < 3 }}|{{ 'a' in 'cat' }}|{{ 'z' not in 'cat' }}|{{ 2 in l }}|"
                   "{{ 'role' in m }}|{{ not m }}|{{ x and 'y' }}|{{ none or 'z' }}|"
                   "{{ 'yes' if x else 'no' }}|{{ 'yes' if not x }}|{{ 1 == 1.0 }}|{{ 'a' != 'b' }}|"
                   "{{ [1,2] == [1,2] }}|{{ 'b' > 'a' }}|{{ 2 >= 3 }}",
    "micro_tests": "{% for v in [none, 1, 1.5, 'a', [1], {'a': 1}, true] %}"
                   "{{ v is none }}{{ v is number }}{{ v is string }}{{ v is mapping }}"
                   "{{ v is iterable }}{{ v is sequence }}{{ v is integer }}{{ v is boolean }};"
                   "{% endfor %}{{ undef is defined }}{{ undef is not defined }}{{ m is defined }}"
                   "{{ 4 is divisibleby 2 }}{{ 3 is odd }}{{ 'ab' is lower }}",
    "micro_filters": "{{ '  hi  ' | trim }}|{{ s | length }}|{{ l | length }}|{{ s | upper }}|"
                     "{{ 'ABC' | lower }}|{{ undef | default('d') }}|{{ '' | default('e', true) }}|"
                     "{{ l | join(', ') }}|{{ 'aXbX' | replace('X', '-') }}|{{ m | tojson }}|"
                     "{{ l | first }}|{{ l | last }}|{{ 12 | string }}|{{ '42' | int + 1 }}|"
                     "{{ 'x' | int }}|{{ 3.9 | int }}|{{ s | list }}|{{ m | items | list }}|"
                     "{{ m | dictsort }}|{{ ['b', 'a'] | map('upper') | list }}|"
                     "{{ [{'n': 1}, {'n': 2}] | map(attribute='n') | list }}|"
                     "{{ l | select('odd') | list }}|{{ l | reject('odd') | list }}|"
                     "{{ [m, {'role': 'x'}] | selectattr('role', 'equalto', 'x') | list }}|"
                     "{{ [3, 1, 2] | sort }}|{{ [1, 1, 2] | unique | list }}|{{ l | reverse | list }}|"
                     "{{ -3 | abs }}|{{ 2.567 | round(1) }}|{{ 'hello world' | title }}|"
                     "{{ 'hello' | capitalize }}|{{ {'a': [1, {'b': 'é\"\\n'}], 'c': none} | tojson }}|"
                     "{{ {'a': 1, 'b': [1, 2]} | tojson(indent=2) }}|{{ 1.0 | tojson }}|"
                     "{{ 'a\\nb' | indent(2) }}|{{ l | join }}",
    "micro_methods": "{{ s.startswith('he') }}|{{ s.endswith('lo') }}|{{ '  x '.strip() }}|"
                     "{{ 'xxaxx'.strip('x') }}|{{ ' a '.lstrip() }}|{{ ' a '.rstrip() }}|"
                     "{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a,b,c'.split(',', 1) }}|"
                     "{{ s.upper() }}|{{ 'AbC'.lower() }}|{{ 'aaa'.replace('a', 'b', 2) }}|"
                     "{{ m.items() | list }}|{{ m.keys() | list }}|{{ m.values() | list }}|"
                     "{{ ', '.join(['a', 'b']) }}|{{ 'abc'.find('c') }}|{{ 'a<b>c'.split('<b>')[1] }}|"
                     "{{ 'a b c'.rsplit(' ', 1) }}|{{ s.startswith(('x', 'h')) }}",
    "micro_loops": "{% for x in l %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}"
                   "{{ loop.length }}{{ loop.revindex }}/{% endfor %}|"
                   "{% for x in [] %}no{% else %}empty{% endfor %}|"
                   "{% for k, v in m | dictsort %}{{ k }}={{ v }};{% endfor %}|"
                   "{% for x in l if x > 1 %}{{ x }}{{ loop.length }}{% endfor %}|"
                   "{% for x in l %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 3 %}{% break %}"
                   "{% endif %}{{ x }}{% endfor %}|"
                   "{% for i in range(3) %}{{ i }}{% endfor %}{% for i in range(5, 0, -2) %}{{ i }}"
                   "{% endfor %}|{% for c in 'hé' %}[{{ c }}]{% endfor %}|"
                   "{% for k in m %}{{ k }}{% endfor %}|{% set q = 1 %}{% for x in l %}"
                   "{% set q = x %}{% endfor %}{{ q }}|{% for a in [[1, 2], [3]] %}"
                   "{% for b in a %}{{ loop.index }}{{ b }}{% endfor %};{% endfor %}",
    "micro_set": "{% set a = 1 %}{% set b, c = [2, 3] %}{{ a }}{{ b }}{{ c }}|"
                 "{% set ns = namespace(n=0, s='') %}{% for x in l %}{% set ns.n = ns.n + x %}"
                 "{% set ns.s = ns.s ~ x %}{% endfor %}{{ ns.n }} {{ ns.s }}|"
                 "{% set blk %}in {{ a }} block{% endset %}[{{ blk }}]|"
                 "{% if true %}{% set inner = 'leaks' %}{% endif %}{{ inner }}",
    "micro_macro": "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
                   "{{ greet('a') }}|{{ greet('b', '?') }}|{{ greet(punct='.', name='c') }}|"
                   "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n }}*{{ fact(n - 1) }}{% endif %}"
                   "{% endmacro %}{{ fact(4) }}|{{ greet('d') | upper }}",
    "micro_raw": "{% raw %}{{ not parsed }}{% endraw %}|{{ 'after' }}",
}

# Templates that must fail: (name, source, context).
ERRORS = [
    ("err_raise", "{{ raise_exception('custom failure text') }}", {}),
    ("err_unknown_filter", "{{ 'a' | frobnicate }}", {}),
    ("err_undefined_attr", "{{ nothing.here }}", {}),
    ("err_type", "{{ 'a' + 1 }}", {}),
    ("err_syntax_unclosed", "{% if x %}open", {"x": True}),
    ("err_syntax_expr", "{{ 1 + }}", {}),
    ("err_unknown_tag", "{% frob %}", {}),
    ("err_div_zero", "{{ 1 // 0 }}", {}),
    ("err_unterminated", "{{ 'abc }}", {}),
]

ODD = "Tab\there, quote ' and \" , brace {{ x }} {% y %}, <end_of_turn>, emoji 😀, é, \u3000wide\u3000"

GEMMA3_CASES = [
    ("user_only", {"messages": [{"role": "user", "content": "Hello!"}], "add_generation_prompt": True}),
    ("no_gen_prompt", {"messages": [{"role": "user", "content": "Hello!"}], "add_generation_prompt": False}),
    ("system", {"messages": [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "  What is 2+2?  "}],
                "add_generation_prompt": True}),
    ("multi_turn", {"messages": [{"role": "user", "content": "Hi"},
                                 {"role": "assistant", "content": "Hello! How can I help?"},
                                 {"role": "user", "content": "Tell me a joke.\n"}],
                    "add_generation_prompt": True}),
    ("parts", {"messages": [{"role": "system", "content": [{"type": "text", "text": "Sys parts"}]},
                            {"role": "user", "content": [{"type": "image"},
                                                         {"type": "text", "text": " Describe. "}]}],
               "add_generation_prompt": True}),
    ("odd_chars", {"messages": [{"role": "user", "content": ODD},
                                {"role": "assistant", "content": "\u00a0ok\u00a0"}],
                   "add_generation_prompt": False}),
    ("empty_content", {"messages": [{"role": "user", "content": ""}], "add_generation_prompt": True}),
]
GEMMA3_ERRORS = [
    ("not_alternating", {"messages": [{"role": "user", "content": "a"},
                                      {"role": "user", "content": "b"}]}),
]

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["c", "f"], "description": "Unit"},
        "days": {"type": "integer", "description": "Days ahead", "nullable": True},
        "tags": {"type": "array", "items": {"type": "string"}, "description": "Tags"},
        "opts": {"type": "object", "properties": {"deep": {"type": "boolean"}},
                 "required": ["deep"], "description": "Options"}},
        "required": ["city"]}}}
SEARCH = {"type": "function", "function": {
    "name": "search", "description": "Search the web.",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
    "response": {"type": "object", "description": "Results"}}}

GEMMA4_CASES = [
    ("user_only", {"messages": [{"role": "user", "content": "Hello!"}], "add_generation_prompt": True}),
    ("system_multi", {"messages": [{"role": "system", "content": " You are terse. "},
                                   {"role": "user", "content": "Hi"},
                                   {"role": "assistant", "content": "Hello."},
                                   {"role": "user", "content": "Again"}],
                      "add_generation_prompt": True}),
    ("no_gen", {"messages": [{"role": "user", "content": "Hi"},
                             {"role": "assistant", "content": "<|channel>thought\nhmm<channel|>Answer."}],
                "add_generation_prompt": False}),
    ("thinking", {"messages": [{"role": "user", "content": "Think."}], "add_generation_prompt": True,
                  "enable_thinking": True}),
    ("tools", {"messages": [{"role": "user", "content": "Weather in Paris?"}],
               "tools": [WEATHER, SEARCH], "add_generation_prompt": True}),
    ("tool_call_roundtrip", {
        "messages": [{"role": "user", "content": "Weather in Paris?"},
                     {"role": "assistant", "content": "", "reasoning_content": "need the tool",
                      "tool_calls": [{"id": "c1", "type": "function", "function": {
                          "name": "get_weather",
                          "arguments": {"city": "Paris", "days": 2, "ok": True, "x": 1.5,
                                        "opts": {"deep": False, "list": ["a", 1]}}}}]},
                     {"role": "tool", "tool_call_id": "c1", "content": "{\"temp\": 21}"},
                     {"role": "assistant", "content": "It is 21."},
                     {"role": "user", "content": "Thanks"}],
        "tools": [WEATHER], "add_generation_prompt": True}),
    ("tool_call_pending", {
        "messages": [{"role": "user", "content": "Search cats"},
                     {"role": "assistant", "tool_calls": [{"function": {
                         "name": "search", "arguments": "{\"q\": \"cats\"}"}}]}],
        "tools": [SEARCH], "add_generation_prompt": True}),
    ("tool_responses_legacy", {
        "messages": [{"role": "user", "content": "Search"},
                     {"role": "assistant", "content": "Done.", "tool_responses": [
                         {"name": "search", "response": {"hits": 3, "top": "x"}}]}],
        "add_generation_prompt": True}),
    ("parts_media", {"messages": [{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": " What is this? "}, {"type": "audio"}]}],
        "add_generation_prompt": True}),
    ("odd_chars", {"messages": [{"role": "developer", "content": ODD},
                                {"role": "user", "content": ODD}], "add_generation_prompt": True}),
]

GUARD_CHATS = [
    ("prompt_only", [{"role": "user", "content": "How do I bake bread?"}]),
    ("prompt_response", [{"role": "user", "content": "Hi there"},
                         {"role": "assistant", "content": "I will find you."}]),
    ("odd_chars", [{"role": "user", "content": ODD}]),
    ("odd_response", [{"role": "user", "content": " spaces "}, {"role": "assistant", "content": ODD}]),
]
GUIDELINE = ('"No Dangerous Content": The prompt shall not contain or seek generation of content '
             'that harming oneself and/or others (e.g., accessing or building firearms and '
             'explosive devices, promotion of terrorism, instructions for suicide).')

GUIDELINE_SHORT = '"No Threats": no threats.'


def main():
    env = make_env()
    templates = {
        "gemma3": json.loads((SHARED / "gemma3/tokenizer_config.json").read_text())["chat_template"],
        "gemma4": (SHARED / "gemma4/chat-template-31B-it.jinja").read_text(),
        "shieldgemma": (DATA / "shieldgemma_chat_template.jinja").read_text(),
        "reworded": REWORDED,
        "guard_compact": GUARD_COMPACT,
    }
    templates.update(MICRO)
    cases = []

    def add(tname, cname, ctx):
        case = {"template": tname, "name": cname, "context": ctx}
        try:
            case["expected"] = env.from_string(templates[tname]).render(**ctx)
        except Exception as e:  # noqa: BLE001 (TemplateError, TypeError, ZeroDivisionError)
            case["error"] = str(e)
        cases.append(case)

    base = {"bos_token": "<bos>", "eos_token": "<eos>"}
    for name, ctx in GEMMA3_CASES + GEMMA3_ERRORS:
        add("gemma3", name, {**base, **ctx})
    for name, ctx in GEMMA4_CASES:
        add("gemma4", name, {**base, **ctx})
    for t in ("shieldgemma", "reworded", "guard_compact"):
        for name, chat in GUARD_CHATS:
            add(t, name, {**base, "messages": chat, "guideline": GUIDELINE})
    for name, chat in GUARD_CHATS[:2]:  # short enough for the tiny model's 256-token context
        add("reworded", name + "_short", {**base, "messages": chat, "guideline": GUIDELINE_SHORT})
    add("shieldgemma", "three_messages", {**base, "guideline": GUIDELINE,
                                          "messages": [{"role": "user", "content": "a"}] * 3})
    micro_ctx = {"x": True, "m": {"role": "user", "content": "hey"}, "l": [1, 2, 3], "s": "hello"}
    for name in MICRO:
        add(name, "default", micro_ctx)
    add("micro_logic", "x_false", {**micro_ctx, "x": False})
    for name, src, ctx in ERRORS:
        templates[name] = src
        add(name, "error", ctx)

    for c in cases:
        if c["template"].startswith("err_"):
            assert "error" in c or "expected" not in c, c
    OUT.write_text(json.dumps({"command": COMMAND, "jinja2": jinja2.__version__,
                               "templates": templates, "cases": cases},
                              ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {OUT}: {len(cases)} cases")


if __name__ == "__main__":
    main()
