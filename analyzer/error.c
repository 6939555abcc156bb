/* Error recording shared by every analyzer module. */
#include "provfs/analyzer.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

pa_status pa_error_set(pa_error *err, pa_status status, const char *fmt, ...)
{
    if (!err || err->status != PA_OK)
        return err ? err->status : status;
    err->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    /* One line, always: a message built from file bytes must not break log or stderr lines. */
    for (char *p = err->msg; *p; p++)
        if (*p == '\n' || *p == '\r' || (unsigned char)*p < 0x20)
            *p = ' ';
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
    }
    return "unknown";
}
