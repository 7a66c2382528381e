#!/usr/bin/env python3
"""tools/ref_tokenizer.py: reference token ids for the tokenizer conformance tests.

Writes (under tests/fixtures/):
  tok_cases.jsonl        >= 300 strings (ASCII, contractions, digits and long numbers,
                         whitespace runs, newlines, accents, CJK, emoji, code, special
                         tokens, random mixes) with the ids the HF `tokenizers` library
                         gives for each fixture tokenizer below, with special tokens
                         split out ("ids") and with them read as plain text ("plain",
                         tokenizer.encode_special_tokens = True).
  tok_<pre>.json         small byte-level BPE tokenizers trained with `tokenizers`
                         (vocab 2000) for each pre-tokenizer: smollm (Digits(individual)
                         + ByteLevel regex, SmolLM2's config), gpt2 (ByteLevel regex),
                         llama3 (Split(llama3 regex) + ByteLevel, ignore_merges) and
                         qwen2 (NFC normalizer, Split(qwen2 regex) + ByteLevel), and
                         custom (three Splits, DeepSeek-V3 style, + ByteLevel).
  tok_<pre>_config.json  tokenizer_config.json with a chat template (smollm: SmolLM2's
                         template as stored in its GGUF; llama3: the Llama 3.0 template;
                         qwen2: Qwen2.5-Instruct's template without its tool rendering;
                         llama31: Llama 3.1's template without its tool branches, used
                         with tok_llama3.json).
  tok_nfc.jsonl          unicodedata.normalize("NFC") of strings covering every canonical
                         decomposition, Hangul jamo and random base + combining mark mixes
                         (qwen2's tokenizer.json has an NFC normalizer, as Qwen2.5's does).
  tok_chat.jsonl         transformers apply_chat_template ids for a few conversations
                         with the smollm and llama3 fixture tokenizers.
  tok_smollm2_real.jsonl (only with --gguf) ids from the real SmolLM2-135M-Instruct
                         tokenizer (built from the GGUF's vocab/merges with SmolLM2's
                         tokenizer.json configuration) and its chat formatting.

Usage: pip install tokenizers transformers jinja2 gguf
       python3 tools/ref_tokenizer.py [--gguf path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import argparse
import json
import os
import random

import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")

SMOL_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<reponame>", "<file_sep>",
                 "<filename>", "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>",
                 "<jupyter_start>", "<jupyter_text>", "<jupyter_code>", "<jupyter_output>", "<jupyter_script>",
                 "<empty_output>"]
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
GPT2_SPECIALS = ["<|endoftext|>"]

RE_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# a DeepSeek-V3-style chain of splits, exercising the "custom" pre-tokenizer
RE_CUSTOM = [r"\p{N}{1,3}", r"[一-龥぀-ゟ゠-ヿ]+",
             r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
             r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"]
RE_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")

SMOL_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                 "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                 "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                 "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                 "{% endif %}")
LLAMA3_TEMPLATE = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
                   "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
                   "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
                   "{{ content }}{% endfor %}{% if add_generation_prompt %}"
                   "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")

# Llama 3.1's template without its tool-calling branches (which rft does not render)
LLAMA31_TEMPLATE = """{{- bos_token }}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

# Qwen2.5-Instruct's template structure (the tool branches reduced to their system-turn lines)
QWEN25_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\n<|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

ZEN = """Beautiful is better than ugly. Explicit is better than implicit. Simple is better than complex.
Complex is better than complicated. Flat is better than nested. Sparse is better than dense.
Readability counts. Special cases aren't special enough to break the rules. Although practicality beats purity.
Errors should never pass silently. Unless explicitly silenced. In the face of ambiguity, refuse the temptation
to guess. There should be one-- and preferably only one --obvious way to do it. Although that way may not be
obvious at first unless you're Dutch. Now is better than never. Although never is often better than *right* now.
If the implementation is hard to explain, it's a bad idea. If the implementation is easy to explain, it may be a
good idea. Namespaces are one honking great idea -- let's do more of those!"""

WORDS = ("the of and to in is you that it he was for on are as with his they at be this have from or one had by "
         "word but not what all were we when your can said there use an each which she do how their if will up "
         "other about out many then them these so some her would make like him into time has look two more write "
         "go see number no way could people my than first water been call who oil its now find long down day did "
         "get come made may part model token train reward policy gradient sample grade answer question compute "
         "café naïve résumé über straße École Ärger ñandú façade coöperate").split()


def cases():
    """The test strings: fixed categories plus seeded random mixes."""
    c = []
    c += ["", "a", " ", "Hello", "Hello world", "Hello, world!", " Hello", "hello  world", "HELLO WORLD",
          "The quick brown fox jumps over the lazy dog.", "I can't believe it's not butter.",
          "We're here, they've gone, I'd say you'll see I'm right.", "IT'S CAPS'LL WORK'D", "it'S mixed'Re",
          "'s 't 're 've 'm 'll 'd", "rock'n'roll", "o'clock", "''''", "'", "don't", "Don't", "DON'T",
          "A man, a plan, a canal: Panama", "e.g. i.e. etc.", "foo_bar-baz.qux", "CamelCaseIdentifierName",
          "snake_case_identifier_name", "a.b.c.d.e.f", "user@example.com", "https://example.com/path?q=1&r=2#frag",
          "C:\\Users\\me\\file.txt", "/usr/local/bin/rft --set x=1", "(parentheses) [brackets] {braces} <angles>",
          "!!!???...,,,;;;:::", "~`@#$%^&*()_+-=", "...", "--", "—", "–", "«quoted»", "“smart quotes”",
          "‘single’", "¿Qué?", "¡Hola!", "Pneumonoultramicroscopicsilicovolcanoconiosis",
          "supercalifragilisticexpialidocious", "antidisestablishmentarianism is a long word indeed"]
    c += ["0", "1", "12", "123", "1234", "12345", "123456", "1234567890", "12345678901234567890123456789",
          "3.14159265358979", "-42", "+7", "1,000,000", "1_000_000", "1e-10", "6.022e23", "0x1F", "0b1010",
          "x=42", "2024-01-01", "12:34:56", "v1.2.3", "a1b2c3", "abc123def456", " 1", "  1", " 12 34 ", "1 2 3 4",
          "100%", "$19.99", "€5,00", "Room 101", "٠١٢٣٤٥٦٧٨٩", "१२३", "½ ¼ ¾", "x² + y³", "Ⅻ Ⅳ", "①②③",
          "12a", "a12", "1.2.3.4", "999999999999999999999", "007", " 2024 ", "3 + 4 = 7", "10^9+7", "π≈3.14"]
    c += ["a  b", "a   b", "a    b", "\t\tx", "\tx\t", "  leading", "trailing  ", "   ", "    ", "\n", "\n\n",
          "\n\n\n", "a\nb", "a\n\nb", "a \n b", "a\n b", "a \nb", "\r\n", "a\r\nb", "a\r\n\r\nb", " \n ", "\n \n",
          "line one\nline two\nline three", "  indented\n    more\n\tTabbed", "x \t y", "end.\n", "\n\nstart",
          " \u00a0 ", "a\u00a0b", "\u3000x", "x\u3000", "a\u0085b", "a\u2028b", "a\u2029b", "a\u180eb",
          "a\u200bb", "a\u2003b", "\u2009thin", "\x0b\x0c", "a\x0bb", "  \n\n  ", "\t\n\t\n", "word\n\n\n\nword",
          "a" + " " * 20 + "b", " " * 50, "\n" * 30, "x" + "\t" * 10,
          # punctuation next to Unicode spaces: tells apart engines whose \s differ
          "x!\u0085y", "?\u0085\u0085?", ")\u180e(", ".\u00a0.", "!\u2028!", ",\u3000,", "\u200b!", "-\u1680-",
          "#\u2007#", "*\u202f*", "+\u205f+", "\u0085\u0085", "a\u0085", ":\x1c:", "(\x85)"]
    c += ["def f(x):\n    return x * 2\n", "for i in range(10):\n\tprint(i)", "int main(void) { return 0; }",
          "#include <stdio.h>\nint main() {\n  printf(\"hi\\n\");\n}", "if (a && b || !c) { x += 1; }",
          "let x = vec![1, 2, 3];", "SELECT * FROM users WHERE id = 42;", "<div class=\"x\">text</div>",
          "{\"key\": [1, 2, {\"nested\": null}], \"b\": true}", "x = lambda a, b: a**b // 3",
          "```python\nimport numpy as np\n```", "# Heading\n\n- item 1\n- item 2\n", "a->b->c; p != q",
          "i++; --j; k <<= 2; m >>= 1;", "std::vector<int> v{1,2,3};", "@decorator\ndef g(): pass",
          "    def method(self, *args, **kwargs):\n        pass", "$ echo $HOME | grep -v '^#'",
          "<?xml version=\"1.0\"?>", "%d %s %5.2f\\n", "\\frac{a}{b} + \\sum_{i=0}^{n} x_i", "a == b ? c : d",
          "while(true){break;}", "// comment\n/* block */", "fn main() -> Result<(), Box<dyn Error>> {}"]
    c += ["café", "naïve", "résumé", "Ürümqi", "straße", "Ærøskøbing", "crème brûlée", "piñata", "façade",
          "Dvořák", "Łódź", "Zürich", "São Paulo", "Tiếng Việt có dấu", "Ελληνικά γράμματα", "Русский текст здесь",
          "עברית", "العربية لغة جميلة", "हिन्दी भाषा", "ภาษาไทย", "ქართული", "Հայերեն", "cafe\u0301",
          "e\u0301\u0300", "A\u030a", "ﬁ ligature", "Ǆ ǅ ǆ", "İstanbul ıi", "ÀÉÎÕÜ àéîõü", "Ñandú"]
    c += ["你好", "你好，世界！", "中文文本测试，包含标点。", "日本語のテキストです。", "カタカナ ひらがな 漢字",
          "한국어 텍스트", "안녕하세요 세계", "混合English和中文", "数字123和文字", "東京タワー", "北京欢迎你",
          "我爱自然语言处理", "これはペンです", "第一章　序論", "「引用」と『二重』", "１２３ＡＢＣ", "ｈｅｌｌｏ",
          "𠀀𠀁𠀂", "漢字" * 10, "中 文 空 格", "한글과 English 섞기", "。、！？", "ㄱㄴㄷ", "ｶﾀｶﾅ",
          "你好\n世界"]
    c += ["👍", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇯🇵", "❤️", "😀😃😄😁", "I ❤️ NY", "🤖 robot", "emoji😀inline",
          "🎉🎉🎉", "⭐ star", "☕️ coffee", "🏳️‍🌈", "👩🏾‍💻", "✅ done ❌ failed", "🔥" * 8, "a🙂b", " 🙂 ",
          "🙂\n🙂", "💯%", "🐍 python", "∑∫√∞", "→ ← ↑ ↓", "♠♥♦♣", "🀄🃏"]
    c += ["<|im_start|>user\nHi<|im_end|>", "<|im_start|>system\nYou are helpful.<|im_end|>\n",
          "<|im_start|>assistant\n", "<|endoftext|>", "a<|endoftext|>b", "<|endoftext|><|endoftext|>",
          " <|im_end|> ", "<|im_start|><|im_end|>", "<|im_start", "<|im_end|", "im_start|>", "<||>",
          "<|im_start|>user\n12 + 34 = ?<|im_end|>\n<|im_start|>assistant\n46<|im_end|>",
          "text<|im_end|>\n", "<file_sep>code<filename>x.py", "<jupyter_code>print(1)<jupyter_output>1",
          "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
          "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>", "<|end_of_text|>",
          "<<|endoftext|>>", "<|endoftext|", "[USER_TAG] hello [USER_TAG]", "x[USER_TAG]y", "<empty_output>",
          "<|im_start|>user\n  spaced  <|im_end|>", "<reponame>rft<gh_stars>10"]
    c += ["cafe\u0301 re\u0301sume\u0301", "\u212b\u2126\u212a", "\u1e9b\u0323", "q\u0307\u0323", "a\u0328\u0301",
          "\u1100\u1161\u11a8", "\u1100\u1161 \u1100", "\u0915\u093c", "o\u0308\u0304", "\u00f4\u0323",
          "\u0041\u030a\u0301", "\u0b47\u0b3e", "\u0300a", "\u0344x", "\u0958\u0959", "\uf900\uf901",
          "e\u0301\u0327", "\u03b1\u0313\u0301\u0345", "n\u0303o\u0303", "\u2000\u2001"]
    c += [" zyzzyva", "zyzzyva", " qwertyuiop", " zyzzyva qwertyuiop zyzzyvas", "Zyzzyva"]
    c += ["a" * 100, "ab" * 60, "!" * 40, "=" * 64, "-" * 80, "abc " * 30, "The " * 40,
          "0123456789" * 10, "\u00e9" * 40, "x" * 1000, "ha" * 300 + "!", "." * 200]
    rng = random.Random(1234)
    pool = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") + list(" " * 12) +
            list("\n\t.,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`") + list("éèàüößñçøåæ中文日本語한국어👍🙂❤️\u00a0\u3000١٢½²"))
    for _ in range(40):
        c.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 60))))
    for _ in range(40):
        n = rng.randint(1, 25)
        s = []
        for _ in range(n):
            w = rng.choice(WORDS)
            if rng.random() < 0.2: w = w.capitalize()
            if rng.random() < 0.1: w = str(rng.randint(0, 10 ** rng.randint(1, 12)))
            s.append(w)
            s.append(rng.choice([" ", " ", " ", "  ", ", ", ". ", "\n", "'s ", "-"]))
        c.append("".join(s))
    return c


def train(pre, cases_):
    # the ignore_merges words stay out of the corpus so no merge reaches them
    corpus = [ZEN] * 3 + [s for s in cases_ if "zyzzyva" not in s and "qwertyuiop" not in s] * 2
    rng = random.Random(99)
    for _ in range(3000):
        corpus.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 20))) +
                      rng.choice([".", "!", "?", "\n", " 123.", " 2024", ""]))
    specials = {"smollm": SMOL_SPECIALS, "gpt2": GPT2_SPECIALS, "llama3": LLAMA3_SPECIALS,
                "qwen2": QWEN2_SPECIALS, "custom": GPT2_SPECIALS}[pre]
    tok = Tokenizer(models.BPE())
    if pre == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                              use_regex=True)])
    elif pre == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif pre == "custom":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(rx), behavior="isolated", invert=False) for rx in RE_CUSTOM] +
            [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        rx = RE_LLAMA3 if pre == "llama3" else RE_QWEN2
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(rx), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    if pre == "qwen2":
        tok.normalizer = normalizers.NFC()
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=2000, min_frequency=2, special_tokens=specials,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=tr)
    if pre == "gpt2":
        tok.add_tokens([AddedToken("[USER_TAG]", special=False, normalized=False)])
    if pre == "llama3":
        # as Llama 3's tokenizer.json: encode(add_special_tokens=True) prepends <|begin_of_text|>
        from tokenizers import processors
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                          pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
                                          special_tokens=[("<|begin_of_text|>", 0)])])
    j = json.loads(tok.to_str())
    if pre == "llama3":
        # ignore_merges, and whole words that no merge sequence reaches, so the
        # rule is exercised
        j["model"]["ignore_merges"] = True
        v = j["model"]["vocab"]
        for w in ["Ġzyzzyva", "Ġqwertyuiop"]:
            assert w not in v
            v[w] = max(v.values()) + 1
        # added tokens keep their ids (the extra words went after them)
    return Tokenizer.from_str(json.dumps(j)), j


def nfc_cases():
    rows = []
    dec = [chr(cp) for cp in range(0x110000) if unicodedata.decomposition(chr(cp))
           and not unicodedata.decomposition(chr(cp)).startswith("<")]
    for i in range(0, len(dec), 40):
        rows.append(unicodedata.normalize("NFD", " ".join(dec[i:i + 40])))
        rows.append(" ".join(dec[i:i + 40]))
    rows.append("".join(chr(x) for x in range(0x1100, 0x1113)) + "".join(chr(x) for x in range(0x1161, 0x1176)))
    rng = random.Random(77)
    bases = list("aeiouAEOnczsgkqy") + ["\u0391", "\u03b1", "\u0415", "\u0905", "\u0b47", "\u1100", "\u1161",
                                        "\u11a8", "\uac00", "\u3099", "\u30ab", "\u05d0", "\u0627"]
    marks = [chr(x) for x in list(range(0x300, 0x370)) + [0x591, 0x5b0, 0x5bc, 0x64b, 0x653, 0x654, 0x655, 0x93c,
                                                           0x94d, 0xb3e, 0xb56, 0xb57, 0x3099, 0x309a, 0x1dc0, 0x20d0]]
    for _ in range(400):
        rows.append("".join(rng.choice(bases) if rng.random() < 0.4 else rng.choice(marks)
                            for _ in range(rng.randint(1, 14))))
    return [{"text": r, "nfc": unicodedata.normalize("NFC", r)} for r in rows]


def encode_both(tok, s):
    tok.encode_special_tokens = False
    a = tok.encode(s, add_special_tokens=False).ids
    tok.encode_special_tokens = True
    b = tok.encode(s, add_special_tokens=False).ids
    tok.encode_special_tokens = False
    return a, b


CONVS = [
    [{"role": "user", "content": "What is 2 + 2?"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi there"}],
    [{"role": "user", "content": "Write a haiku."}, {"role": "assistant", "content": "Leaves fall\nquietly."},
     {"role": "user", "content": "  Another one, with spaces  \n"}],
    [{"role": "user", "content": "Ünïcödé 中文 👍 and numbers 12345"}],
    [{"role": "system", "content": "\u00a0 Be brief.\u3000\n"}, {"role": "user", "content": "\u2003\x1cwhy?\u0085 "}],
]


def chat_refs(tok, template, bos, eos):
    from transformers import PreTrainedTokenizerFast
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos)
    hf.chat_template = template
    out = []
    for conv in CONVS:
        for gen in (False, True):
            text = hf.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
            ids = hf.apply_chat_template(conv, tokenize=True, add_generation_prompt=gen)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            out.append({"messages": conv, "add_generation_prompt": gen, "text": text, "ids": list(ids)})
    return out


def real_smollm2(path):
    import gguf
    r = gguf.GGUFReader(path)

    def strs(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    toks = strs("tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in strs("tokenizer.ggml.merges")]
    tt = r.fields["tokenizer.ggml.token_type"]
    types = [int(tt.parts[i][0]) for i in tt.data]
    tmpl = bytes(r.fields["tokenizer.chat_template"].parts[r.fields["tokenizer.chat_template"].data[0]]).decode()
    vocab = {t: i for i, t in enumerate(toks)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(toks[i], special=True, normalized=False)
                            for i in range(len(toks)) if types[i] == 3])
    return tok, tmpl, toks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", help="SmolLM2-135M-Instruct GGUF (tools/fetch_smollm2.sh)")
    a = ap.parse_args()
    cs = cases()
    assert len(cs) >= 300, len(cs)
    toks = {}
    for pre in ["smollm", "gpt2", "llama3", "qwen2", "custom"]:
        tok, j = train(pre, cs)
        toks[pre] = tok
        with open(os.path.join(FIX, f"tok_{pre}.json"), "w") as f:
            json.dump(j, f, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(FIX, "tok_cases.jsonl"), "w") as f:
        for s in cs:
            row = {"text": s, "ids": {}, "plain": {}}
            for pre, tok in toks.items():
                row["ids"][pre], row["plain"][pre] = encode_both(tok, s)
                if pre == "llama3":
                    assert tok.encode(s).ids == [0] + row["ids"][pre]
                want = unicodedata.normalize("NFC", s) if pre == "qwen2" else s
                assert tok.decode(row["ids"][pre], skip_special_tokens=False) == want, (pre, s)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    with open(os.path.join(FIX, "tok_nfc.jsonl"), "w") as f:
        for row in nfc_cases():
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    cfgs = {"smollm": (SMOL_TEMPLATE, "<|im_start|>", "<|im_end|>"),
            "llama3": (LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>"),
            "llama31": (LLAMA31_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>"),
            "qwen2": (QWEN25_TEMPLATE, None, "<|im_end|>")}
    with open(os.path.join(FIX, "tok_chat.jsonl"), "w") as f:
        for pre, (tmpl, bos, eos) in cfgs.items():
            with open(os.path.join(FIX, f"tok_{pre}_config.json"), "w") as g:
                cfg = {"chat_template": tmpl, "bos_token": bos, "eos_token": eos, "pad_token": eos,
                       "add_bos_token": False, "tokenizer_class": "GPT2Tokenizer"}
                if pre == "qwen2":    # Qwen2.5: no bos
                    cfg["bos_token"] = None
                    cfg["pad_token"] = "<|endoftext|>"
                if pre != "smollm":   # Llama 3: bos comes from the post-processor
                    del cfg["add_bos_token"]
                    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
                json.dump(cfg, g, ensure_ascii=False, indent=1)
            for row in chat_refs(toks["llama3" if pre == "llama31" else pre], tmpl, bos, eos):
                row["tokenizer"] = pre
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    if a.gguf:
        tok, tmpl, vocab = real_smollm2(a.gguf)
        assert tmpl == SMOL_TEMPLATE, "SmolLM2 GGUF chat template differs from the one in this script"
        with open(os.path.join(FIX, "tok_smollm2_real.jsonl"), "w") as f:
            for s in cs:
                ids, plain = encode_both(tok, s)
                f.write(json.dumps({"text": s, "ids": ids, "plain": plain}, ensure_ascii=False) + "\n")
            for row in chat_refs(tok, tmpl, "<|im_start|>", "<|im_end|>"):
                row["chat"] = True
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(cs)} strings written to {FIX}")


if __name__ == "__main__":
    main()
