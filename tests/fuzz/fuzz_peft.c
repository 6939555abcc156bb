/* libFuzzer target: adapter_config.json of a PEFT adapter (pa_peft_config_parse), which the
 * daemon reads itself to find an adapter's declared base. */
#include "provfs/analyzer.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pa_peft_config cfg = {0};
    pa_error err = {0};
    pa_status st = pa_peft_config_parse((const char *)data, size, "fuzz/adapter_config.json",
                                        &cfg, &err);
    if (st != PA_OK) {
        if (err.status != st || !err.msg[0] || strchr(err.msg, '\n'))
            __builtin_trap();
    } else if (cfg.base && strlen(cfg.base) > size) {
        __builtin_trap();
    }
    pa_peft_config_free(&cfg);
    return 0;
}
