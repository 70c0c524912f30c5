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

/* The response cache's rules (cache/cache_key.h) for OpenAI's chat-shaped
 * requests and answers, shared with gemini.c like the lists above. */
#define OPENAI_CACHE_REQUEST_RULES                                                                 \
    {"temperature", CACHE_MATCH_TEMPERATURE, NULL, 0, NULL},                                       \
        {"web_search_options", CACHE_MATCH_SET, NULL, CACHE_WHY_PROVIDER_TOOL, NULL},              \
        {"model", CACHE_MATCH_STRING, "*-search-*", CACHE_WHY_PROVIDER_TOOL, NULL},                \
        {"tools.type", CACHE_MATCH_STRING, "web_search*", CACHE_WHY_PROVIDER_TOOL, NULL},          \
        {"tools.type", CACHE_MATCH_STRING, "file_search", CACHE_WHY_PROVIDER_TOOL, NULL},          \
        {"tools.type", CACHE_MATCH_STRING, "code_interpreter", CACHE_WHY_PROVIDER_TOOL, NULL},     \
        {"tools.type", CACHE_MATCH_STRING, "mcp", CACHE_WHY_PROVIDER_TOOL, NULL},                  \
        {"tools.type", CACHE_MATCH_STRING, "image_generation", CACHE_WHY_IMAGE, NULL},             \
        {"modalities", CACHE_MATCH_STRING, "audio", CACHE_WHY_AUDIO, NULL},                        \
    {                                                                                              \
        "audio", CACHE_MATCH_SET, NULL, CACHE_WHY_AUDIO, NULL                                      \
    }

/* A refusal, web search citations (results that change), audio; whole
 * (message) and streamed (delta). */
#define OPENAI_CACHE_ANSWER_RULES                                                                  \
    {"choices.message.refusal", CACHE_MATCH_SET, NULL, CACHE_WHY_REFUSAL, NULL},                   \
        {"choices.delta.refusal", CACHE_MATCH_SET, NULL, CACHE_WHY_REFUSAL, NULL},                 \
        {"choices.finish_reason", CACHE_MATCH_STRING, "content_filter", CACHE_WHY_REFUSAL, NULL},  \
        {"choices.message.annotations.type", CACHE_MATCH_STRING, "url_citation",                   \
         CACHE_WHY_PROVIDER_TOOL, NULL},                                                           \
        {"choices.delta.annotations.type", CACHE_MATCH_STRING, "url_citation",                     \
         CACHE_WHY_PROVIDER_TOOL, NULL},                                                           \
        {"choices.message.audio", CACHE_MATCH_SET, NULL, CACHE_WHY_AUDIO, NULL},                   \
    {                                                                                              \
        "choices.delta.audio", CACHE_MATCH_SET, NULL, CACHE_WHY_AUDIO, NULL                        \
    }

#endif
