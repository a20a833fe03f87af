#ifndef FENCE_ROUTER_CLIBVIRT_SHIM_H
#define FENCE_ROUTER_CLIBVIRT_SHIM_H
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#endif
