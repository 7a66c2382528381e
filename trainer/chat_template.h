/* trainer/chat_template.h: built-in chat templates (ChatML for SmolLM2 and
 * Qwen, Llama 3, raw), recognised from a model's jinja chat template by its
 * markers or chosen by name (`chat_template: chatml | llama3 | raw`), and the
 * formatting of a conversation into text and token ids exactly as
 * transformers' apply_chat_template renders these templates.
 *
 *   chatml: [default system turn] then per message
 *           "<|im_start|>{role}\n{content}<|im_end|>\n";
 *           generation prompt "<|im_start|>assistant\n". The default system
 *           turn is the one a model's template inserts when the first message
 *           is not a system message (SmolLM2: "You are a helpful AI assistant
 *           named SmolLM, trained by Hugging Face"; Qwen2.5: "You are Qwen,
 *           created by Alibaba Cloud. You are a helpful assistant.").
 *   llama3: "<|begin_of_text|>" then per message
 *           "<|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>";
 *           generation prompt "<|start_header_id|>assistant<|end_header_id|>\n\n"
 *           (the Llama 3.0 template). When the model's template is Llama 3.1 /
 *           3.2's (it has "Cutting Knowledge Date"), a system turn always comes
 *           first: "Cutting Knowledge Date: December 2023\nToday Date: {date}\n\n"
 *           + the first message's content if it is a system message (trimmed);
 *           date: the template's date_string fallback ("26 Jul 2024"), or today
 *           ("%d %b %Y", local time) when the template calls strftime_now, as
 *           transformers renders it. Tool calls are not rendered.
 *   raw:    the contents concatenated; no generation prompt.
 */
#ifndef RFT_CHAT_TEMPLATE_H
#define RFT_CHAT_TEMPLATE_H

#include <stddef.h>

#include "tokenizer.h"

typedef struct chat_msg {
    const char *role;      /* "system", "user", "assistant", ... */
    const char *content;   /* UTF-8, NUL-terminated */
} chat_msg;

/* Built-in name for a jinja template text: "chatml", "llama3", or NULL when
   the markers are not recognised. */
const char *chat_template_detect(const char *jinja);

/* 1 if name is a built-in template ("chatml", "llama3", "raw"). */
int chat_template_valid(const char *name);

/* The default system prompt a ChatML jinja template inserts when the first
   message is not a system message, as a malloc'ed string; NULL if none. */
char *chat_template_default_system(const char *jinja);

/* Canonical jinja text for a built-in template (for export when the model had
   none): default_system may be NULL. malloc'ed. */
char *chat_template_jinja(const char *name, const char *default_system);

/* Renders msgs with t's template into a malloc'ed NUL-terminated string. */
int chat_format(const tokenizer *t, const chat_msg *msgs, size_t n, int add_generation_prompt, char **text,
                size_t *len, char *err, size_t err_cap);

/* Token ids that end a generated turn: eos, then whichever of <|im_end|>,
   <|endoftext|>, <|eot_id|>, <|eom_id|>, <|end_of_text|> the vocabulary has
   as special tokens (the eos lists of SmolLM2, Qwen2.5 and Llama 3.x
   generation configs), without repeats. Returns how many (at most cap). */
int chat_stop_tokens(const tokenizer *t, int32_t *out, int cap);

/* chat_format then tokenizer_encode with special tokens allowed and no bos
   added (the template writes bos itself), appending to out. */
int chat_encode(const tokenizer *t, const chat_msg *msgs, size_t n, int add_generation_prompt, tok_ids *out,
                char *err, size_t err_cap);

#endif
