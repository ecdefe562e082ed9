#ifndef FERRY_CSYSTEMD_SHIM_H
#define FERRY_CSYSTEMD_SHIM_H
#include <systemd/sd-daemon.h>
#endif
