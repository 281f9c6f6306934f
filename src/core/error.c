/* Status names and the thread-local last-error message. */
#include <stdio.h>

#include "internal.h"

static _Thread_local char last_error[1024];

const char *mlxn_version(void)
{
#define MLXN_STR2(x) #x
#define MLXN_STR(x) MLXN_STR2(x)
    return MLXN_STR(MLXN_VERSION_MAJOR) "." MLXN_STR(MLXN_VERSION_MINOR) "." MLXN_STR(
        MLXN_VERSION_PATCH);
}

const char *mlxn_status_str(mlxn_status status)
{
    static const char *const names[MLXN_STATUS_COUNT] = {
        "MLXN_STATUS_OK",
        "MLXN_STATUS_ERR_INVALID_ARG",
        "MLXN_STATUS_ERR_SHAPE",
        "MLXN_STATUS_ERR_DTYPE",
        "MLXN_STATUS_ERR_UNSUPPORTED",
        "MLXN_STATUS_ERR_OUT_OF_MEMORY",
        "MLXN_STATUS_ERR_IO",
        "MLXN_STATUS_ERR_BAD_FORMAT",
        "MLXN_STATUS_ERR_DEVICE",
        "MLXN_STATUS_ERR_INTERNAL",
    };
    if ((unsigned)status >= MLXN_STATUS_COUNT)
        return "MLXN_STATUS_UNKNOWN";
    return names[status];
}

const char *mlxn_last_error(void)
{
    return last_error;
}

mlxn_status mlxn_error(mlxn_status status, const char *func, const char *fmt, ...)
{
    int n = snprintf(last_error, sizeof last_error, "%s: ", func);
    if (n < 0 || (size_t)n >= sizeof last_error)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error + n, sizeof last_error - (size_t)n, fmt, ap);
    va_end(ap);
    return status;
}
