/* util.h: small macros shared by every module (attributes, array length). */
#ifndef TOLLGATE_UTIL_H
#define TOLLGATE_UTIL_H

#define MUST_CHECK __attribute__((warn_unused_result))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define UNUSED(x) (void)(x)

#endif
