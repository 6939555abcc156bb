/* Error recording shared by every analyzer module. */
#include "provfs/analyzer.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Length of the valid, printable UTF-8 sequence at s (n bytes left), 0 when the byte at s must be
 * escaped: ASCII controls and DEL, C1 controls, overlong forms, surrogates, beyond U+10FFFF. */
size_t pa_utf8_printable(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return c >= 0x20 && c != 0x7f ? 1 : 0;
    size_t len;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
        return 0;
    return len;
}

size_t pa_escape_text(const char *in, size_t in_len, char *out, size_t out_size)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0;
    if (out_size == 0)
        return 0;
    for (size_t i = 0; i < in_len;) {
        size_t len = pa_utf8_printable(s + i, in_len - i);
        if (len) {
            if (o + len >= out_size)
                break;
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        } else {
            if (o + 4 >= out_size)
                break;
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[s[i] >> 4];
            out[o++] = hex[s[i] & 15];
            i++;
        }
    }
    out[o] = '\0';
    return o;
}

pa_status pa_error_set(pa_error *err, pa_status status, const char *fmt, ...)
{
    if (!err || err->status != PA_OK)
        return err ? err->status : status;
    err->status = status;
    char raw[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof raw ? (size_t)n : sizeof raw - 1;
    /* One printable line, always: a message built from file bytes (names, JSON keys) must not
     * break log lines, forge them with control characters or make JSON invalid with bad UTF-8.
     * Escaping is idempotent (its output is printable ASCII), so a message copied into another
     * error stays as it was. */
    pa_escape_text(raw, len, err->msg, sizeof err->msg);
    return status;
}

void pa_error_clear(pa_error *err)
{
    if (err) {
        err->status = PA_OK;
        err->msg[0] = '\0';
    }
}

const char *pa_status_name(pa_status status)
{
    switch (status) {
    case PA_OK: return "ok";
    case PA_E_IO: return "io";
    case PA_E_FORMAT: return "format";
    case PA_E_UNSUPPORTED: return "unsupported";
    case PA_E_INCOMPLETE: return "incomplete";
    case PA_E_NOMEM: return "nomem";
    case PA_E_LIMIT: return "limit";
    case PA_E_ARG: return "arg";
    case PA_E_CANCELLED: return "cancelled";
    case PA_E_UNSAFE: return "unsafe";
    }
    return "unknown";
}
