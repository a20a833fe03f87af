// Only a header: the driver comes from the toolchain's libFuzzer when built with -sanitize=fuzzer.
#include "CLibFuzzer.h"
