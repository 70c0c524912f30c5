/* openai_fields.h: the members of OpenAI's chat-shaped request bodies
 * (chat, completions, embeddings, Responses) and of its whole answers that
 * provider_openai reads, as rows of a json_scan_field array: one list for
 * openai.c (which adds its image and speech members) and for gemini.c,
 * whose OpenAI-compatible chat endpoint is read by provider_openai too (its
 * body and answer are scanned with gemini's lists, which must hold all of
 * these). The text rows feed estimates. */
#ifndef TOLLGATE_OPENAI_FIELDS_H
#define TOLLGATE_OPENAI_FIELDS_H

#define OPENAI_BODY_FIELDS                                                                         \
    {"model", false}, {"stream", false}, {"stream_options", false},                                \
        {"stream_options.include_usage", false}, {"max_completion_tokens", false},                 \
        {"max_tokens", false}, {"max_output_tokens", false}, {"n", false}, {"best_of", false},     \
        {"background", false}, {"service_tier", false}, {"messages", true}, {"input", true},       \
        {"prompt", true},                                                                          \
    {                                                                                              \
        "instructions", true                                                                       \
    }

#define OPENAI_ANSWER_FIELDS                                                                       \
    {"model", false}, {"service_tier", false}, {"usage", false}, {"usage.prompt_tokens", false},   \
        {"usage.completion_tokens", false}, {"usage.prompt_tokens_details.cached_tokens", false},  \
        {"usage.prompt_tokens_details.cache_write_tokens", false},                                 \
        {"usage.completion_tokens_details.reasoning_tokens", false},                               \
        {"usage.input_tokens", false}, {"usage.output_tokens", false},                             \
        {"usage.input_tokens_details.cached_tokens", false},                                       \
        {"usage.input_tokens_details.cache_write_tokens", false},                                  \
        {"usage.output_tokens_details.reasoning_tokens", false}, {"choices", true},                \
    {                                                                                              \
        "output", true                                                                             \
    }

#endif
