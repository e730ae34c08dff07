#!/usr/bin/env python3
"""Generate the golden tokenizer fixture for Gemma 3 (tests/golden/tokenizer_gemma3.json).

Every input string below is tokenized with the reference tokenizer, llama-cpp-python's
``Llama(model_path, vocab_only=True).tokenize(data, add_bos=..., special=...)``, and the
resulting token ids are written out.  The C++ tokenizer in g4 must reproduce them id-for-id.

Inputs are stored as lowercase hex of the raw bytes because some of them are deliberately
invalid UTF-8.  Every input gets one case with add_bos=True, special=False (the main mode);
inputs that contain special-token texts, plus a fixed list of others (SPECIAL_TRUE_EXTRA),
also get a case with add_bos=True, special=True.

Regenerate with exactly (from the repository root):

    .venv/bin/python scripts/gen_tokenizer_fixtures.py --model ~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf --out tests/golden/tokenizer_gemma3.json

The output is deterministic: no randomness, no dependence on dict/set iteration order of
anything but literals in this file.  (NFD forms come from unicodedata.normalize, which is
stable across Python versions for the characters used, by Unicode's normalization stability
policy.)  The model file's SHA-256 is checked against EXPECTED_MODEL_SHA256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import unicodedata
from collections import Counter

COMMAND = (".venv/bin/python scripts/gen_tokenizer_fixtures.py "
           "--model ~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf "
           "--out tests/golden/tokenizer_gemma3.json")
EXPECTED_MODEL_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

# ---------------------------------------------------------------------------------------------
# Test inputs.  Each entry is (name, str | bytes).  The category is the part of the name before
# the first '/'.
# ---------------------------------------------------------------------------------------------

LANGS = [
    # Latin script with diacritics
    ("en", "The quick brown fox jumps over the lazy dog."),
    ("en_contractions", "I'm sure you'll find it's what they'd've wanted, isn't it? Don't."),
    ("de", "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich."),
    ("de_compound", "Die Straßenbahnhaltestelle liegt gegenüber der Bäckerei Müller."),
    ("fr", "Voix ambiguë d'un cœur qui, au zéphyr, préfère les jattes de kiwis."),
    ("fr_elision", "L'été dernier, j'ai vu qu'il n'était pas là. « Où es-tu ? »"),
    ("es", "El pingüino Wenceslao hizo kilómetros bajo exhaustiva lluvia y frío, añoraba a su querido cachorro. ¿Qué? ¡Sí!"),
    ("pt", "Luís argüia à Júlia que «brações, fé, chá, óxido, pôr, zângão» eram palavras do português."),
    ("it", "Quel vituperabile xenofobo zelante assaggia il whisky ed esclama: alleluja! Perché è così."),
    ("nl", "Pa's wijze lynx bezag vroom het fikse aquaduct. Één twee drie, ideeën, coöperatie."),
    ("sv", "Flygande bäckasiner söka hwila på mjuka tuvor. Åsa åt ölet."),
    ("da_no", "Høj bly gom vandt fræk sexquiz på wc. Blåbærsyltetøy og rødgrøt med fløte."),
    ("fi", "Törkylempijävongahdus. Hyvää päivää, mitä kuuluu? Äiti öljyää."),
    ("is", "Kæmi ný öxi hér, ykist þjófum nú bæði víl og ádrepa. Þór og Óðinn."),
    ("cs", "Příliš žluťoučký kůň úpěl ďábelské ódy."),
    ("sk", "Kŕdeľ ďatľov učí koňa žrať kôru. Ľúbim ťa."),
    ("pl", "Zażółć gęślą jaźń. Pchnąć w tę łódź jeża lub ośm skrzyń fig."),
    ("ro", "Înjurând pițigăiat, zoofobul comandă vexat whisky și tequila. Țară, școală."),
    ("hu", "Árvíztűrő tükörfúrógép. Öt szép szűz lány őrült írót nyúz."),
    ("tr", "Pijamalı hasta yağız şoföre çabucak güvendi. İstanbul'da ılık bir gün; IĞDIR ığdır."),
    ("lt", "Įlinkdama fechtuotojo špaga sublykčiojusi pragręžė apvalų arbūzą."),
    ("lv", "Glāžšķūņa rūķīši dzērumā čiepj Baha koncertflīģeļu vākus."),
    ("et", "Põdur Zagrebi tšellomängija-följetonist Ciqo külmetas kehvas garaažis."),
    ("hr_sl", "Gojazni đačić s biciklom drži hmelj i finu vatu u džepu nošnje. Čćžšđ."),
    ("sq", "Zgjohu, Çelë, që të shkojmë në treg. Ëndrra e bukur."),
    ("ga_cy", "D'fhuascail Íosa Úrmhac na hÓighe Beannaithe pór Éava agus Ádhaimh. Parciais fy jac codi baw hud llawn dŵr ger tŷ Mabon."),
    ("eo", "Eĥoŝanĝo ĉiuĵaŭde. Laŭ Ludoviko Zamenhof bongustas freŝa ĉeĥa manĝaĵo kun spicoj."),
    ("la", "Gallia est omnis divisa in partes tres, quarum unam incolunt Belgae."),
    ("vi", "Tiếng Việt có dấu: Tôi yêu tiếng nước tôi từ khi mới ra đời, người ơi!"),
    ("yo", "Ẹ kú àárọ̀. Ọmọ mi, ṣé dáadáa ni? Ìlú Èkó tóbi gan-an."),
    ("ha", "Ƙarƙashin ƙasa akwai ruwa. Ɗan'uwana ya tafi kasuwa."),
    ("sw", "Habari za asubuhi? Ninapenda kusoma vitabu vya Kiswahili."),
    ("zu", "Sawubona! Ngiyabonga kakhulu ngosizo lwakho."),
    ("az_uz", "Azərbaycan dili: Ağ şəhər, gözəl xəzər. O‘zbekiston, G‘afur G‘ulom."),
    # Cyrillic
    ("ru", "Съешь же ещё этих мягких французских булок, да выпей чаю."),
    ("ru_yo", "Ёжик в тумане. Ещё, ёлка, объём, подъезд — всё хорошо!"),
    ("uk", "Чуєш їх, доцю, га? Кумедна ж ти, прощайся без ґольфів!"),
    ("bg", "Жълтата дюля беше щастлива, че пухът, който цъфна, замръзна като гьон."),
    ("sr_cyrl", "Љубазни фењерџија чађавог лица хоће да ми покаже штос."),
    ("kk", "Қазақ тілі: Әке, ұл, өмір, қыз, үй, ғылым, һәм, ңғ."),
    ("mn_cyrl", "Монгол хэл: Сайн байна уу? Өнөөдөр цаг агаар сайхан байна. Үүл, өвөл."),
    # Other scripts
    ("el", "Ξεσκεπάζω τὴν ψυχοφθόρα βδελυγμία. Γειά σου κόσμε! ΆΈΉΊΌΎΏ ΐΰ"),
    ("el_polytonic", "Ἐν ἀρχῇ ἦν ὁ λόγος, καὶ ὁ λόγος ἦν πρὸς τὸν θεόν."),
    ("ar", "صِف خَلقَ خَودِ كَمِثلِ الشَمسِ إِذ بَزَغَت — يَحظى الضَجيعُ بِها نَجلاءَ مِعطارِ"),
    ("ar_plain", "مرحبا بالعالم! كيف حالك اليوم؟ ١٢٣٤٥٦٧٨٩٠"),
    ("fa", "سلام دنیا. زبان فارسی زیباست؛ من کتاب می‌خوانم. ۱۴۰۲"),
    ("ur", "اردو ایک خوبصورت زبان ہے۔ آپ کیسے ہیں؟"),
    ("he", "דג סקרן שט בים מאוכזב ולפתע מצא לו חברה איך הקליטה"),
    ("he_niqqud", "בְּרֵאשִׁית בָּרָא אֱלֹהִים אֵת הַשָּׁמַיִם וְאֵת הָאָרֶץ"),
    ("yi", "ייִדיש איז אַ שפּראַך."),
    ("hi", "ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले विष्णुवतार भगवान श्रीराम।"),
    ("hi_plain", "नमस्ते दुनिया! आप कैसे हैं? मैं ठीक हूँ। १२३४५"),
    ("mr", "महाराष्ट्र ही संतांची भूमी आहे. ळ आणि ज्ञ."),
    ("ne", "नेपाली भाषा: म भात खान्छु।"),
    ("bn", "আমি বাংলায় গান গাই। ক্ষ্মা, জ্ঞান, শ্রী। ০১২৩৪৫"),
    ("pa", "ਪੰਜਾਬੀ ਭਾਸ਼ਾ ਗੁਰਮੁਖੀ ਲਿਪੀ ਵਿੱਚ ਲਿਖੀ ਜਾਂਦੀ ਹੈ।"),
    ("gu", "ગુજરાતી ભાષા સુંદર છે. કેમ છો?"),
    ("or", "ଓଡ଼ିଆ ଭାଷା ଭାରତର ଏକ ପ୍ରାଚୀନ ଭାଷା।"),
    ("ta", "யாமறிந்த மொழிகளிலே தமிழ்மொழி போல் இனிதாவது எங்கும் காணோம்."),
    ("te", "తెలుగు భాష దేశ భాషలందు లెస్స. ఎలా ఉన్నారు?"),
    ("kn", "ಕನ್ನಡ ನಾಡು ನುಡಿ. ನೀವು ಹೇಗಿದ್ದೀರಿ?"),
    ("ml", "മലയാളം ഒരു ദ്രാവിഡ ഭാഷയാണ്. സുഖമാണോ?"),
    ("si", "සිංහල භාෂාව ශ්‍රී ලංකාවේ නිල භාෂාවකි. ආයුබෝවන්!"),
    ("th", "เป็นมนุษย์สุดประเสริฐเลิศคุณค่า กว่าบรรดาฝูงสัตว์เดรัจฉาน"),
    ("th_plain", "สวัสดีครับ วันนี้อากาศดีมาก ๑๒๓"),
    ("lo", "ສະບາຍດີ ພາສາລາວ ເປັນພາສາທີ່ງາມ."),
    ("km", "ភាសាខ្មែរ គឺជាភាសាផ្លូវការរបស់ប្រទេសកម្ពុជា។ សួស្តី!"),
    ("my", "မြန်မာဘာသာစကား မင်္ဂလာပါ။ နေကောင်းလား။"),
    ("bo", "བོད་ཡིག་ནི་བོད་མིའི་ཡི་གེ་ཡིན། བཀྲ་ཤིས་བདེ་ལེགས།"),
    ("ka", "ქართული ენა ძალიან ლამაზია. გამარჯობა, როგორ ხარ?"),
    ("hy", "Հայերենը հնդեվրոպական լեզու է։ Բարև ձեզ, ինչպե՞ս եք։"),
    ("am", "አማርኛ የኢትዮጵያ ሥራ ቋንቋ ነው። ሰላም ነው?"),
    ("ti", "ትግርኛ ቋንቋ እዩ። ከመይ ኣለኻ?"),
    ("mn_trad", "ᠮᠣᠩᠭᠣᠯ ᠪᠢᠴᠢᠭ᠌ ᠤᠨ ᠦᠰᠦᠭ"),
    ("dv", "ދިވެހި ބަސް ތާނަ އަކުރުން ލިޔެވެ."),
    ("chr", "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ ᎣᏏᏲ"),
    ("iu", "ᐃᓄᒃᑎᑐᑦ ᐅᖃᐅᓯᖅ ᐊᐃ"),
    ("syr", "ܠܫܢܐ ܣܘܪܝܝܐ"),
    ("zh_hans", "我们都是中国人。今天天气很好，我们去公园散步吧！简体字：发、过、门、书。"),
    ("zh_hant", "我們都是中國人。今天天氣很好，我們去公園散步吧！繁體字：發、過、門、書。"),
    ("zh_classical", "學而時習之，不亦說乎？有朋自遠方來，不亦樂乎？"),
    ("ja_mixed", "いろはにほへと ちりぬるを。私は東京に住んでいます。カタカナ、ひらがな、漢字。"),
    ("ja_katakana", "コンピューター・プログラミング・ランゲージ　ｶﾀｶﾅﾊﾝｶｸ"),
    ("ja_hiragana", "きょうはいいてんきですね。ありがとうございました。"),
    ("ko", "다람쥐 헌 쳇바퀴에 타고파. 안녕하세요, 만나서 반갑습니다!"),
    ("ko_hanja", "大韓民國 대한민국 韓國語 한국어"),
]

# Single words / short fragments in many scripts (programmatically combined with contexts below).
WORDS = ["hello", "Hello", "HELLO", "naïve", "Straße", "дом", "Σοφία", "مرحبا", "שלום",
         "नमस्ते", "ภาษา", "中文", "日本語", "한국어", "ქართ", "Ամեն", "ሰላም", "tiếng"]
CONTEXTS = [
    ("bare", "{w}"),
    ("lead_space", " {w}"),
    ("trail_space", "{w} "),
    ("double", "{w} {w}"),
    ("two_spaces", "{w}  {w}"),
    ("newline", "{w}\n{w}"),
]

CODE = [
    ("python", '''import os
from typing import List


def fib(n: int) -> List[int]:
    """Return the first n Fibonacci numbers."""
    a, b = 0, 1
    out = []
    for _ in range(n):
        out.append(a)
        a, b = b, a + b
    return out


if __name__ == "__main__":
    print(f"{fib(10)!r} -> {os.getcwd()}")
'''),
    ("python_class", '''class Stack:
    def __init__(self):
        self._items: list[object] = []

    def push(self, x):  # O(1)
        self._items.append(x)

    @property
    def top(self):
        return self._items[-1] if self._items else None
'''),
    ("c", '''#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
\tint *p = malloc(sizeof(int) * 16);
\tif (!p) return 1;
\tfor (int i = 0; i < 16; ++i) {
\t\tp[i] = i * i;
\t}
\tprintf("%d\\n", p[15]);
\tfree(p);
\treturn 0;
}
'''),
    ("cpp", '''#include <vector>
#include <string_view>

template <typename T>
constexpr auto sum(const std::vector<T>& v) -> T {
    T acc{};
    for (const auto& x : v) acc += x;
    return acc;
}

namespace g4::detail {
struct Foo final : public Bar<int, 3> { ~Foo() override = default; };
}  // namespace g4::detail
'''),
    ("rust", '''use std::collections::HashMap;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for w in "a b a c".split_whitespace() {
        *counts.entry(w).or_insert(0) += 1;
    }
    println!("{:?}", counts);
    Ok(())
}
'''),
    ("go", '''package main

import (
\t"fmt"
\t"strings"
)

func main() {
\tparts := strings.Split("a,b,c", ",")
\tfor i, p := range parts {
\t\tfmt.Printf("%d: %s\\n", i, p)
\t}
}
'''),
    ("javascript", '''const fetchJson = async (url) => {
  const res = await fetch(url, { headers: { "Accept": "application/json" } });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return res.json();
};

export default function App() {
  return <div className="app">{items.map((x) => <Item key={x.id} {...x} />)}</div>;
}
'''),
    ("typescript", '''interface User { id: number; name?: string }
type Maybe<T> = T | null | undefined;
function greet(u: Maybe<User>): string {
  return u?.name ?? "anonymous";
}
'''),
    ("java", '''public final class Main {
    private static final int MAX = 1_000_000;

    public static void main(String[] args) throws Exception {
        var list = new java.util.ArrayList<String>();
        for (int i = 0; i < MAX; i++) {
            if (i % 100_000 == 0) list.add(String.valueOf(i));
        }
        System.out.println(list);
    }
}
'''),
    ("sql", '''SELECT u.id, u.name, COUNT(o.id) AS orders
FROM users AS u
LEFT JOIN orders o ON o.user_id = u.id
WHERE u.created_at >= '2024-01-01' AND u.email LIKE '%@example.com'
GROUP BY u.id, u.name
HAVING COUNT(o.id) > 5
ORDER BY orders DESC
LIMIT 10;
'''),
    ("haskell", '''module Main where

import qualified Data.Map as M

quicksort :: Ord a => [a] -> [a]
quicksort []     = []
quicksort (p:xs) = quicksort [x | x <- xs, x < p] ++ [p] ++ quicksort [x | x <- xs, x >= p]

main :: IO ()
main = print . quicksort $ [3, 1, 4, 1, 5, 9, 2, 6]
'''),
    ("shell", '''#!/usr/bin/env bash
set -euo pipefail

for f in "$@"; do
\tif [[ -f "$f" ]]; then
\t\twc -l "$f" | awk '{print $1}' >> /tmp/out.txt 2>&1
\tfi
done
echo "${HOME:-/root}" && ls -la | grep -E '^d' || true
'''),
    ("ruby", '''class Greeter
  def initialize(name) = @name = name
  def greet
    puts "Hello, #{@name}!"
  end
end
Greeter.new("world").greet
'''),
    ("lua", '''local function map(t, f)
  local r = {}
  for i, v in ipairs(t) do r[i] = f(v) end
  return r
end
print(table.concat(map({1, 2, 3}, function(x) return x * 2 end), ", "))
'''),
    ("php", '''<?php
declare(strict_types=1);
$arr = ['a' => 1, 'b' => 2];
foreach ($arr as $k => $v) {
    echo "{$k}={$v}\\n";
}
'''),
    ("makefile", '''CC ?= gcc
CFLAGS := -O2 -Wall

all: main

main: main.o util.o
\t$(CC) $(CFLAGS) -o $@ $^

%.o: %.c
\t$(CC) $(CFLAGS) -c $< -o $@

.PHONY: clean
clean:
\trm -f *.o main
'''),
    ("yaml", '''name: ci
on: [push, pull_request]
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: |
          cmake -B build -G Ninja
          cmake --build build
'''),
    ("toml", '''[package]
name = "g4"
version = "0.1.0"
edition = "2021"

[dependencies]
serde = { version = "1", features = ["derive"] }
'''),
    ("css", '''.card > .title::before {
  content: "\\2014";
  color: #ff00aa;
  margin: 0 auto !important;
}
@media (max-width: 600px) { .card { display: none; } }
'''),
    ("latex", r'''\begin{equation}
  E = mc^2 \quad \text{and} \quad \int_0^\infty e^{-x^2}\,dx = \frac{\sqrt{\pi}}{2}
\end{equation}
'''),
    ("diff", '''diff --git a/src/main.cc b/src/main.cc
--- a/src/main.cc
+++ b/src/main.cc
@@ -1,3 +1,4 @@
 #include <cstdio>
+#include <cstdlib>
 int main() {
-  return 0;
+  return EXIT_SUCCESS;
'''),
    ("regex", r'''^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*)@(?:[a-z0-9-]+\.)+[a-z]{2,}$'''),
    ("python_tabs_mixed", "def f():\n\tif x:\n\t    return 1\n    \telse:\n\t\treturn 2\n"),
    ("c_crlf", "int x = 1;\r\nint y = 2;\r\n\r\nint main(void) {\r\n    return x + y;\r\n}\r\n"),
    ("asm", "_start:\n    mov rax, 60\n    xor edi, edi\n    syscall\n"),
    ("brainfuck", "++++++++[>++++[>++>+++>+++>+<<<<-]>+>+>->>+[<]<-]>>.>---.+++++++..+++."),
]

STRUCTURED = [
    ("json_compact", '{"a":1,"b":[true,false,null],"c":{"d":"e\\u00e9\\n","f":-1.5e-10}}'),
    ("json_pretty", '''{
  "name": "gemma-3-270m",
  "vocab_size": 262144,
  "layers": [
    {"type": "sliding", "window": 512},
    {"type": "global", "window": null}
  ],
  "tags": ["llm", "日本語", "emoji 😀"],
  "nested": {"empty_obj": {}, "empty_arr": []}
}
'''),
    ("json_escapes", '"\\"quoted\\" \\\\ backslash \\/ slash \\b\\f\\n\\r\\t \\ud83d\\ude00"'),
    ("jsonl", '{"id": 1, "text": "first"}\n{"id": 2, "text": "second"}\n{"id": 3, "text": ""}\n'),
    ("markdown_doc", '''# Title

Some *emphasis*, **bold**, `inline code` and a [link](https://example.com/path?q=1&r=2).

## List

- item one
  - nested item
    1. numbered
- [ ] todo
- [x] done

> A quote
> spanning lines

```python
print("hello")
```

| col A | col B |
|------:|:------|
| 1     | two   |

---
'''),
    ("markdown_headings", "# H1\n## H2\n### H3\n#### H4\n##### H5\n###### H6\n"),
    ("markdown_table", "| a | b | c |\n|---|---|---|\n| 1 | 2 | 3 |\n| α | β | γ |\n"),
    ("html_doc", '''<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Test &amp; check</title></head>
<body>
  <h1>Heading</h1>
  <p class="lead">Hello&nbsp;<b>world</b> &lt;3 &#x1F600; &#128512;</p>
  <table><thead><tr><th>A</th><th>B</th></tr></thead>
  <tbody><tr><td>1</td><td>2</td></tr></tbody></table>
  <ul><li><a href="/x">x</a></li></ul>
  <div><span>s</span><img src="a.png"/><code>c</code></div>
</body>
</html>
'''),
    ("html_inline_tags", "<strong>bold</strong> <em>it</em> <i>i</i> <u>u</u> <s>strike</s> x<sub>2</sub> e<sup>x</sup>"),
    ("html_blockquote", "<blockquote>quoted</blockquote><h2>t</h2><h6>t</h6><footer>f</footer><iframe></iframe><caption>c</caption><tfoot></tfoot><bbox>1,2</bbox>"),
    ("html_tags_uppercase", "<TABLE><TR><TD>x</TD></TR></TABLE><H1>X</H1><B>y</B>"),
    ("html_tags_attrs", '<table border="1"><tr class="x"><td colspan=2>v</td></tr></table><div id="a">d</div>'),
    ("xml", '''<?xml version="1.0" encoding="UTF-8"?>
<root xmlns:x="urn:example">
  <x:item id="1" name='single'>text &amp; more</x:item>
  <empty/>
  <![CDATA[ raw <stuff> & things ]]>
  <!-- comment -->
</root>
'''),
    ("svg", '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><path d="M0 0L10 10Z" fill="#000"/></svg>'),
    ("csv", "id,name,score\n1,Alice,93.5\n2,\"Bob, Jr.\",88\n3,Zoë,\n"),
    ("ini", "[section]\nkey = value\n; comment\nother=1\n"),
    ("url", "https://user:pass@example.com:8080/a/b/c.html?x=1&y=%20z#frag"),
    ("email", "Contact: first.last+tag@sub.example.co.uk, <admin@例え.jp>"),
    ("path_windows", "C:\\Users\\Public\\Documents\\file (1).txt"),
    ("path_unix", "/usr/local/lib/python3.12/site-packages/llama_cpp/__init__.py"),
    ("base64", "SGVsbG8sIFdvcmxkIQ==U29tZSBsb25nZXIgYmFzZTY0IGVuY29kZWQgdGV4dCBoZXJlLg=="),
    ("uuid_hash", "550e8400-e29b-41d4-a716-446655440000 sha256:a5fd3b62230aa5ec60212297dc9d20eaa70578ac"),
    ("chat_like_plain", "User: What's 2+2?\nAssistant: 4.\nUser: Thanks!\n"),
]

NUMBERS = [
    ("int_small", "0 1 2 3 4 5 6 7 8 9 10"),
    ("int_year", "In 1969, 2001 and 2024."),
    ("float", "3.14159 2.71828 -0.5 +1.0 1e10 6.022e23 1.6E-19"),
    ("thousands", "1,234,567.89 1.234.567,89 1 234 567 1_000_000 1'000'000"),
    ("phone", "+1 (555) 123-4567, +44 20 7946 0958"),
    ("date_time", "2024-03-15T13:45:30.123Z 15/03/2024 03:45 PM"),
    ("version", "v1.2.3-rc.1+build.456, Python 3.12.0, gcc 13.2.0"),
    ("hex_bin_oct", "0xDEADBEEF 0b101010 0o755 0777 #ff8800"),
    ("math", "2+2=4; 3*4=12; 10/3≈3.333; x²+y²=z²; √2; ∑ᵢ aᵢ; ∞ ≠ −∞; ½ ¼ ¾"),
    ("currency", "$1,000 €20.50 £3 ¥500 ₹1,00,000 ₩10000 ₿0.001"),
    ("ordinals", "1st 2nd 3rd 4th 21st 101st"),
    ("fullwidth_digits", "０１２３４５６７８９ ＡＢＣ ａｂｃ"),
    ("arabic_indic", "٠١٢٣٤٥٦٧٨٩ ۰۱۲۳۴۵۶۷۸۹"),
    ("devanagari_digits", "०१२३४५६७८९"),
    ("thai_digits", "๐๑๒๓๔๕๖๗๘๙"),
    ("roman", "Ⅰ Ⅱ Ⅲ Ⅳ Ⅻ ⅽ ⅿ"),
    ("circled", "① ② ③ ⑩ ⑳ ㉑ ㊿"),
    ("pi_digits", "3.14159265358979323846264338327950288419716939937510582097494459230781640628"),
    ("ip", "192.168.0.1 10.0.0.255:8080 ::1 2001:db8::ff00:42:8329"),
    ("negative_range", "-5..-1 [0, 100) 1-2-3 10-20%"),
]
DIGIT_RUN_LENGTHS = list(range(1, 21)) + [25, 32, 50, 100]

PUNCT = [
    ("ascii_all", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    ("ellipsis", "Wait... what?! Really?!?! ... …"),
    ("dashes", "a-b a–b a—b a―b a‐b a‑b --- -- -"),
    ("quotes", "\"double\" 'single' “curly” ‘curly’ «guillemets» ‹single› „German“ 「鉤括弧」『二重』"),
    ("brackets", "()[]{}<>⟨⟩【】〔〕（）［］｛｝"),
    ("repeated_bang", "!!!!!!!!!!!!!!!!!!!!"),
    ("repeated_q", "??????????"),
    ("repeated_dots", ".................................................."),
    ("repeated_dash", "-" * 80),
    ("repeated_eq", "=" * 60),
    ("repeated_star", "*" * 40),
    ("repeated_hash", "#" * 30),
    ("repeated_tilde_underscore", "~~~~~~~~____________~~~~~~"),
    ("cjk_punct", "，。、；：？！…—·「」『』《》〈〉"),
    ("arabic_punct", "، ؛ ؟ ٪ ٫ ٬"),
    ("misc_symbols", "© ® ™ § ¶ † ‡ • ° ′ ″ ‰ ‱ ℃ ℉ № ℗ ℠"),
    ("arrows_box", "← ↑ → ↓ ↔ ⇒ ⇔ ┌─┬─┐ │ ├─┼─┤ └─┴─┘ ░▒▓█"),
    ("math_symbols", "∀x∈ℝ: ∃y, x≤y ∧ ¬(x>y) ⊂ ⊆ ∪ ∩ ∅ ∇ ∂ ∫ ∮ ⊗ ⊕"),
    ("emoticons_ascii", ":-) :) ;-) :D XD :P <3 </3 ^_^ -_- o_O ¯\\_(ツ)_/¯ (╯°□°)╯︵ ┻━┻"),
    ("mixed_punct_word", "foo.bar,baz;qux:quux!corge?grault"),
]

EMOJI = [
    ("single", "😀"),
    ("several", "😀😃😄😁😆😅🤣😂"),
    ("in_text", "I love pizza 🍕 and coffee ☕ so much! 🎉🎉"),
    ("skin_tone", "👍 👍🏻 👍🏼 👍🏽 👍🏾 👍🏿"),
    ("zwj_family", "👨‍👩‍👧‍👦"),
    ("zwj_profession", "👩🏾‍💻 🧑‍🚀 👨‍⚕️ 👩‍🔬"),
    ("zwj_couple", "🧑‍🤝‍🧑 👩‍❤️‍💋‍👨 👨‍❤️‍👨"),
    ("rainbow_flag", "🏳️‍🌈 🏳️‍⚧️ 🏴‍☠️"),
    ("flags", "🇺🇸🇯🇵🇩🇪🇫🇷🇧🇷🇮🇳🇨🇳🇰🇷"),
    ("flag_lone_ri", "🇺 🇸🇺"),
    ("tag_flag", "🏴󠁧󠁢󠁳󠁣󠁴󠁿 🏴󠁧󠁢󠁷󠁬󠁳󠁿"),
    ("keycaps", "1️⃣ 2️⃣ #️⃣ *️⃣ 0⃣"),
    ("variation_selectors", "❤ ❤️ ☺ ☺️ ✌ ✌️ ™️"),
    ("repeated", "🔥" * 30),
    ("new_emoji", "🫠 🫶 🥹 🪿 🫎"),
    ("hands_tones_zwj", "🫱🏻‍🫲🏿"),
    ("animals_food", "🐶🐱🐭🐹🐰🦊🐻🐼 🍎🍊🍋🍌🍉🍇"),
    ("symbols", "⭐ ✨ ⚡ ☀ ☁ ☂ ♻ ⚠ ✅ ❌ ➡️"),
    ("emoji_between_words", "hello😀world foo👍🏽bar"),
    ("emoji_newlines", "😀\n😀\n\n😀"),
]

UNICODE = [
    ("combining_acute", "e\u0301 a\u0300 o\u0308 n\u0303 c\u0327"),
    ("combining_stack", "a\u0301\u0302\u0303\u0304\u0305\u0306\u0307\u0308"),
    ("zalgo", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319a\u0310l\u0357g\u0344o\u0312"),
    ("lone_combining", "\u0301"),
    ("combining_after_space", " \u0301x"),
    ("angstrom_variants", "\u00c5 A\u030a \u212b"),
    ("hangul_jamo", "\u1112\u1161\u11ab\u1100\u1173\u11af \ud55c\uae00"),
    ("ligatures", "ﬁ ﬂ ﬀ ﬃ Ĳ œ æ"),
    ("compat_chars", "ｈｅｌｌｏ ＷＯＲＬＤ ① ㎏ ㎞ ℡ ™ ǅ"),
    ("zero_width_space", "zero\u200bwidth\u200bspace"),
    ("zwnj_zwj", "می\u200cخواهم \u200d a\u200db"),
    ("word_joiner", "no\u2060break"),
    ("bom_in_text", "\ufeffhello \ufeffworld"),
    ("soft_hyphen", "hy\u00adphen\u00adation"),
    ("rtl_marks", "abc \u200fשלום\u200e def"),
    ("bidi_embed", "\u202aLRE\u202c \u202bRLE\u202c \u202dLRO\u202c \u202eRLO\u202c"),
    ("bidi_isolates", "\u2066LRI\u2069 \u2067RLI\u2069 \u2068FSI\u2069"),
    ("mixed_rtl_ltr", "The word שלום means peace; السلام عليكم too. 123 ۱۲۳"),
    ("nbsp_variants", "a\u00a0b\u2007c\u202fd\u2009e\u200af\u3000g"),
    ("unicode_spaces", "\u2000\u2001\u2002\u2003\u2004\u2005\u2006x"),
    ("line_para_sep", "line\u2028sep\u2029para\u0085nel"),
    ("variation_selector_cjk", "\u845b\U000e0100 \u845b"),
    ("private_use", "\ue000\uf8ff\U000f0000"),
    ("noncharacters", "\ufffe\uffff\ufdd0"),
    ("replacement_char", "bad \ufffd char"),
    ("astral_cjk", "\U00020000\U0002a6d6\U0002b734 𠮷野家"),
    ("math_alnum", "𝐀𝐁𝐂 𝑎𝑏𝑐 𝔸𝔹ℂ 𝟘𝟙𝟚"),
    ("old_scripts", "𐌰𐌱𐌲 ᚠᚢᚦ 𓀀𓁐 𒀀"),
    ("control_chars", "a\x01b\x07c\x1b[31mred\x1b[0m\x7f"),
    ("nul_inside", "a\x00b\x00\x00c"),
    ("nul_only", "\x00"),
    ("form_feed_vt", "page1\x0cpage2\x0bvt"),
    ("dotless_i_turkish", "İi Iı İSTANBUL istanbul"),
    ("greek_final_sigma", "ΣΊΣΥΦΟΣ σίσυφος ς"),
    ("german_sharp_s", "ß ẞ STRASSE straße"),
]
NFC_NFD = [
    ("cafe", "café résumé naïve"),
    ("vietnamese", "Tiếng Việt có rất nhiều dấu: ắ ằ ẳ ẵ ặ ế ề ể ễ ệ ố ồ ổ ỗ ộ"),
    ("german", "Über Öl äße Bär"),
    ("korean", "한국어 안녕하세요"),
    ("japanese_dakuten", "がぎぐげご パピプペポ ヴ"),
    ("polish", "Zażółć gęślą jaźń"),
    ("greek_tonos", "άέήίόύώ ΐ ΰ"),
    ("yoruba", "Ẹ kú àárọ̀ ọ̀rẹ́"),
]

WHITESPACE_FIXED = [
    ("single_space", " "),
    ("single_tab", "\t"),
    ("single_newline", "\n"),
    ("single_cr", "\r"),
    ("crlf", "\r\n"),
    ("crlf_multi", "a\r\nb\r\n\r\nc\r\n"),
    ("cr_only_lines", "a\rb\rc"),
    ("mixed_newlines", "a\nb\r\nc\rd\n\r\ne"),
    ("leading_spaces", "   hello"),
    ("trailing_spaces", "hello   "),
    ("leading_trailing", "  hello world  "),
    ("leading_newline", "\nhello"),
    ("trailing_newline", "hello\n"),
    ("only_spaces_tabs", " \t \t  \t\t   "),
    ("tab_space_mix", "a\t b \tc\t\td  \t e"),
    ("space_newline_space", " \n \n "),
    ("indented_lines", "line1\n    line2\n        line3\n\tline4\n\t\tline5\n"),
    ("blank_lines_spaces", "a\n  \n\t\n   \nb"),
    ("spaces_before_punct", "word , word . word !"),
    ("spaces_between_words_var", "a b  c   d    e     f      g       h"),
    ("newline_space_word", "\n word\n  word\n   word"),
    ("tab_after_newline", "x\n\ty\n\t\tz"),
    ("space_run_33_in_text", "a" + " " * 33 + "b"),
    ("newline_run_35_in_text", "a" + "\n" * 35 + "b"),
    ("tab_run_40_in_text", "a" + "\t" * 40 + "b"),
    ("spaces_then_newlines", "   \n\n\n   "),
    ("newlines_then_spaces_word", "\n\n    def"),
]
SPACE_RUNS = list(range(1, 21)) + [30, 31, 32, 33, 40, 64, 100]
NEWLINE_RUNS = list(range(1, 21)) + [30, 31, 32, 33, 64]
TAB_RUNS = [1, 2, 3, 4, 8, 16, 31, 32, 33]

LONG_WORDS = [
    ("german", "Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft"),
    ("english", "pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism"),
    ("welsh", "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch"),
    ("finnish", "lentokonesuihkuturbiinimoottoriapumekaanikkoaliupseerioppilas"),
    ("a_500", "a" * 500),
    ("ab_300", "ab" * 300),
    ("x_3000", "x" * 3000),
    ("one_1000", "1" * 1000),
    ("camel_case", "ThisIsAVeryLongCamelCaseIdentifierThatKeepsGoingAndGoingForeverAndEver"),
    ("snake_case", "this_is_a_very_long_snake_case_identifier_that_keeps_going_and_going"),
    ("thai_no_spaces", "ก" * 300),
    ("cjk_run", "漢" * 300),
    ("emoji_run", "🙂" * 200),
    ("hex_blob", "deadbeef" * 64),
    ("mixed_alnum", "a1b2c3d4e5f6g7h8i9j0" * 20),
    ("url_long", "https://example.com/" + "/".join("segment%d" % i for i in range(60)) + "?q=" + "z" * 100),
]

# Texts of Gemma special / control / user-defined tokens embedded in ordinary text.
SPECIAL = [
    ("start_of_turn", "<start_of_turn>"),
    ("end_of_turn", "<end_of_turn>"),
    ("bos", "<bos>"),
    ("eos", "<eos>"),
    ("pad", "<pad>"),
    ("unk", "<unk>"),
    ("mask", "<mask>"),
    ("start_of_image", "<start_of_image>"),
    ("end_of_image", "<end_of_image>"),
    ("unused0", "<unused0>"),
    ("unused98_99", "<unused98><unused99>"),
    ("unused_last", "<unused6241>"),
    ("unused_nonexistent", "<unused6242> <unused-1> <unused>"),
    ("multimodal", "[multimodal]"),
    ("s_tags", "<s>x</s>"),
    ("chat_template", "<bos><start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\nParis.<end_of_turn>\n"),
    ("turn_in_sentence", "Please write <start_of_turn> in your answer and then <end_of_turn>."),
    ("bos_mid_word", "abc<bos>def"),
    ("eos_after_space", "The end. <eos>"),
    ("pad_run", "<pad><pad><pad>"),
    ("nested_brackets", "<<bos>> <<<eos>>>"),
    ("partial", "<start_of_tur <end_of_turn <bos <eos> >"),
    ("uppercase", "<START_OF_TURN> <BOS> <Eos>"),
    ("with_spaces_inside", "< bos > <start of turn>"),
    ("newline_adjacent", "\n<start_of_turn>\n\n<end_of_turn>\n"),
    ("space_adjacent", "  <start_of_turn>  user  "),
    ("image_tokens_text", "Look: <start_of_image>[multimodal]<end_of_image> nice!"),
    ("unk_in_code", 'if tok == "<unk>": return "<pad>"'),
    ("html_and_special", "<b><bos></b><table><eos></table>"),
    ("unicode_around", "日本<start_of_turn>語 😀<end_of_turn>😀"),
    ("unused_in_prose", "tokens like <unused0>, <unused1> and <unused42> are reserved"),
    ("all_specials", "<pad><eos><bos><unk><mask>[multimodal]<start_of_turn><end_of_turn><start_of_image><end_of_image><unused0>"),
    ("escaped_html", "&lt;start_of_turn&gt;user&lt;end_of_turn&gt;"),
    ("json_string", '{"role": "<start_of_turn>", "eos": "<eos>"}'),
]

INVALID = [
    # stray continuation bytes
    ("cont_single_80", b"\x80"),
    ("cont_single_bf", b"\xbf"),
    ("cont_in_ascii", b"abc\x80def"),
    ("cont_run", b"\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b"),
    ("cont_after_valid", b"\xc3\xa9\x80\xa9"),
    ("cont_after_space", b"hello \x9f world"),
    # truncated sequences at the end
    ("trunc_end_2", b"caf\xc3"),
    ("trunc_end_3of3", b"euro \xe2\x82"),
    ("trunc_end_1of3", b"x \xe2"),
    ("trunc_end_3of4", b"emoji \xf0\x9f\x98"),
    ("trunc_end_2of4", b"\xf0\x9f"),
    ("trunc_end_lead_only", b"\xf0"),
    # truncated in the middle
    ("trunc_mid_2", b"a\xc3b"),
    ("trunc_mid_3", b"a\xe2\x82b c"),
    ("trunc_mid_4", b"x\xf0\x9f\x98 y"),
    ("trunc_mid_cjk", b"\xe4\xb8 \xe4\xb8\xad\xe6\x96"),
    ("trunc_then_valid", b"\xe2\x82\xe2\x82\xac"),
    # overlong encodings
    ("overlong_slash_c0af", b"\xc0\xaf"),
    ("overlong_c1bf", b"\xc1\xbf"),
    ("overlong_nul_c080", b"a\xc0\x80b"),
    ("overlong_3byte", b"\xe0\x80\xaf"),
    ("overlong_4byte", b"\xf0\x80\x80\xaf"),
    ("overlong_in_path", b"..\xc0\xaf..\xc0\xafetc/passwd"),
    # invalid bytes FF/FE and beyond-range leads
    ("ff", b"\xff"),
    ("fe", b"\xfe"),
    ("ff_fe", b"\xff\xfe"),
    ("fe_ff_text", b"\xfe\xff hello"),
    ("utf16le_bom", b"\xff\xfeh\x00i\x00"),
    ("utf16be_text", b"\x00h\x00e\x00l\x00l\x00o"),
    ("ff_in_word", b"ab\xffcd\xfeef"),
    ("f5_lead", b"\xf5\x80\x80\x80"),
    ("f4_above_max", b"\xf4\x90\x80\x80"),
    ("five_byte", b"\xf8\x88\x80\x80\x80"),
    ("six_byte", b"\xfc\x84\x80\x80\x80\x80"),
    # surrogates (CESU-8 style)
    ("surrogate_high", b"\xed\xa0\x80"),
    ("surrogate_low", b"\xed\xbf\xbf"),
    ("surrogate_pair_cesu", b"\xed\xa0\xbd\xed\xb8\x80"),
    ("surrogate_in_text", b"x\xed\xa0\x80y"),
    # lead bytes followed by ASCII
    ("lead3_ascii", b"\xe2AB"),
    ("lead2_ascii", b"\xc3A"),
    ("lead4_ascii", b"\xf0ABC"),
    ("lead4_ascii_long", b"\xf0ABCDEF"),
    ("lead3_partial_ascii", b"\xe2\x82A"),
    ("lead_before_space", b"hello\xe2 world"),
    ("lead_before_newline", b"line\xc3\nnext"),
    ("lead_at_end_after_space", b"hello \xe2"),
    # other encodings mis-fed as UTF-8
    ("latin1", "café naïve résumé".encode("latin-1")),
    ("cp1252_quotes", b"\x93smart quotes\x94 \x96 dash \x85"),
    ("shift_jis", "日本語のテキスト".encode("shift_jis")),
    ("gbk", "中文文本".encode("gbk")),
    ("euc_kr", "한국어".encode("euc_kr")),
    ("koi8_r", "привет".encode("koi8_r")),
    # mixtures
    ("valid_invalid_mix", b"ok \xc3\xa9 \xff ok \xe2\x82\xac \xc0\xaf \xf0\x9f\x98\x80 \x80"),
    ("invalid_run", bytes(range(0x80, 0x100))),
    ("all_bytes", bytes(range(256))),
    ("invalid_between_newlines", b"\n\xff\n\xfe\n"),
    ("invalid_before_special", b"\xff<start_of_turn>\xe2"),
    ("invalid_before_html_tag", b"\xe2<b>x</b>"),
    ("lead_swallows_newline_run", b"\xf0\n\n\n\nX"),
    ("lead_swallows_space_run", b"\xe2    x"),
]

# Input names that additionally get a special=True case (besides everything in SPECIAL/...).
SPECIAL_TRUE_EXTRA = [
    "lang/en", "lang/zh_hans", "lang/ar", "code/python", "code/c", "code/makefile",
    "struct/html_doc", "struct/html_inline_tags", "struct/html_blockquote",
    "struct/markdown_doc", "struct/json_pretty", "ws/newlines_20", "ws/spaces_33",
    "ws/tabs_8", "ws/mixed_newlines", "emoji/zwj_family", "emoji/flags",
    "unicode/rtl_marks", "invalid/all_bytes", "invalid/valid_invalid_mix",
    "invalid/invalid_before_special", "invalid/lead_swallows_newline_run",
    "empty/empty", "long/multilingual",
]
SPECIAL_TEXT_MARKERS = [b"<bos>", b"<eos>", b"<pad>", b"<unk>", b"<mask>", b"<start_of_turn>",
                        b"<end_of_turn>", b"<start_of_image>", b"<end_of_image>", b"<unused",
                        b"[multimodal]", b"</s>"]

ENGLISH_SENTENCES = [
    "The tokenizer splits text into pieces drawn from a fixed vocabulary of subwords.",
    "When a character is missing from the vocabulary, it falls back to individual bytes.",
    "Whitespace is replaced with a visible marker before the pieces are merged greedily by score.",
    "Numbers such as 1234567 and 3.14159 are split into single digits by this model.",
    "Quotation marks, \"like these\", and apostrophes, like it's, need care too.",
    "Long documents test that the algorithm stays correct (and fast) across many merges.",
    "Meanwhile, the quick brown fox jumped over 13 lazy dogs on 2024-05-06.",
]


def _fill(pieces: list[str], sep: str, limit: int) -> str:
    """Concatenate pieces cyclically with sep while staying within limit UTF-8 bytes."""
    out = ""
    i = 0
    while True:
        cand = (out + sep if out else "") + pieces[i % len(pieces)]
        if len(cand.encode("utf-8")) > limit:
            return out
        out = cand
        i += 1
        if i > 10000:
            return out


def build_inputs() -> list[tuple[str, bytes]]:
    items: list[tuple[str, bytes]] = []

    def add(name: str, data) -> None:
        items.append((name, data.encode("utf-8") if isinstance(data, str) else bytes(data)))

    add("empty/empty", "")

    for n, t in LANGS:
        add("lang/" + n, t)
    for wi, w in enumerate(WORDS):
        for cn, tmpl in CONTEXTS:
            add("word/%02d_%s" % (wi, cn), tmpl.format(w=w))

    for n, t in CODE:
        add("code/" + n, t)
    for n, t in STRUCTURED:
        add("struct/" + n, t)

    for n, t in NUMBERS:
        add("num/" + n, t)
    for k in DIGIT_RUN_LENGTHS:
        add("num/digits_%d" % k, ("1234567890" * 10)[:k])
    for k in (3, 7, 12):
        add("num/digits_%d_in_text" % k, "id" + "9" * k + "x " + "0" * k)

    for n, t in PUNCT:
        add("punct/" + n, t)
    for n, t in EMOJI:
        add("emoji/" + n, t)
    for n, t in UNICODE:
        add("unicode/" + n, t)
    for n, t in NFC_NFD:
        add("nfc/" + n, unicodedata.normalize("NFC", t))
        add("nfd/" + n, unicodedata.normalize("NFD", t))

    for n, t in WHITESPACE_FIXED:
        add("ws/" + n, t)
    for k in SPACE_RUNS:
        add("ws/spaces_%d" % k, " " * k)
    for k in (1, 2, 3, 4, 8, 31, 32, 40):
        add("ws/spaces_%d_word" % k, " " * k + "word")
        add("ws/word_spaces_%d_word" % k, "word" + " " * k + "word")
    for k in NEWLINE_RUNS:
        add("ws/newlines_%d" % k, "\n" * k)
    for k in (1, 2, 3, 5, 10):
        add("ws/text_newlines_%d_text" % k, "text" + "\n" * k + "text")
        add("ws/crlf_%d" % k, "x" + "\r\n" * k + "y")
    for k in TAB_RUNS:
        add("ws/tabs_%d" % k, "\t" * k)
    for k in (1, 2, 4):
        add("ws/tabs_%d_code" % k, "\t" * k + "return x;")

    for n, t in LONG_WORDS:
        add("longword/" + n, t)

    for n, t in SPECIAL:
        add("special/" + n, t)

    for n, b in INVALID:
        add("invalid/" + n, b)

    # Long texts (2-5 KB).
    add("long/english_prose", _fill(ENGLISH_SENTENCES, " ", 3000))
    add("long/english_paragraphs", _fill(ENGLISH_SENTENCES, "\n\n", 4500))
    add("long/multilingual", _fill([t for _, t in LANGS], "\n", 5000))
    add("long/code_mix", _fill([t for _, t in CODE], "\n", 5000))
    add("long/structured_mix", _fill([t for _, t in STRUCTURED], "\n", 4000))
    add("long/cjk", _fill([t for n, t in LANGS if n.startswith(("zh", "ja", "ko"))], "", 3000))
    add("long/indic", _fill([t for n, t in LANGS if n in ("hi", "bn", "ta", "te", "kn", "ml",
                                                         "si", "gu", "pa", "or", "mr")], " ", 4000))
    add("long/emoji_text", _fill([t for _, t in EMOJI], " ", 2500))

    names = [n for n, _ in items]
    dup = [n for n, c in Counter(names).items() if c > 1]
    if dup:
        raise SystemExit("duplicate input names: %r" % dup)
    return items


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="path to gemma-3-270m-q4_k_m.gguf")
    ap.add_argument("--out", required=True, help="output JSON path")
    ap.add_argument("--allow-model-mismatch", action="store_true",
                    help="do not fail if the model's sha256 differs from the expected one")
    args = ap.parse_args()

    import llama_cpp
    from llama_cpp import Llama

    model_path = os.path.expanduser(args.model)
    digest = sha256_file(model_path)
    if digest != EXPECTED_MODEL_SHA256 and not args.allow_model_mismatch:
        print("error: model sha256 %s != expected %s" % (digest, EXPECTED_MODEL_SHA256),
              file=sys.stderr)
        return 1

    llm = Llama(model_path=model_path, vocab_only=True, verbose=False)

    inputs = build_inputs()
    extra = set(SPECIAL_TRUE_EXTRA)
    missing = sorted(extra - {n for n, _ in inputs})
    if missing:
        raise SystemExit("SPECIAL_TRUE_EXTRA names not found: %r" % missing)

    cases = []
    for name, data in inputs:
        modes = [False]
        if name in extra or any(m in data for m in SPECIAL_TEXT_MARKERS):
            modes.append(True)
        for special in modes:
            ids = llm.tokenize(data, add_bos=True, special=special)
            cases.append({"name": name, "hex": data.hex(), "add_bos": True,
                          "special": special, "ids": [int(i) for i in ids]})

    header = {"generator": "llama-cpp-python %s" % llama_cpp.__version__,
              "command": COMMAND,
              "model_sha256": digest}
    head = json.dumps(header, ensure_ascii=True)[:-1]  # drop the closing brace
    body = ",\n".join(json.dumps(c, ensure_ascii=True) for c in cases)
    text = head + ',\n "cases": [\n' + body + "\n]}\n"
    json.loads(text)  # sanity: valid JSON

    out_dir = os.path.dirname(args.out)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    with open(args.out, "w", encoding="ascii", newline="\n") as f:
        f.write(text)

    cats = Counter(n.split("/", 1)[0] for n, _ in inputs)
    n_special = sum(1 for c in cases if c["special"])
    print("inputs: %d, cases: %d (special=False: %d, special=True: %d), bytes written: %d"
          % (len(inputs), len(cases), len(cases) - n_special, n_special, len(text)))
    print("categories (inputs):")
    for cat, cnt in cats.items():
        print("  %-10s %d" % (cat, cnt))
    print("generator: llama-cpp-python %s, model sha256 %s" % (llama_cpp.__version__, digest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
