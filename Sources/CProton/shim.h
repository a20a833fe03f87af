#ifndef FENCE_ROUTER_CPROTON_SHIM_H
#define FENCE_ROUTER_CPROTON_SHIM_H
#include <proton/connection.h>
#include <proton/condition.h>
#include <proton/delivery.h>
#include <proton/event.h>
#include <proton/link.h>
#include <proton/message.h>
#include <proton/proactor.h>
#include <proton/sasl.h>
#include <proton/session.h>
#include <proton/ssl.h>
#include <proton/terminus.h>
#include <proton/transport.h>
#include <proton/version.h>
#endif
