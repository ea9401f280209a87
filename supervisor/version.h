/*
 * version: what this build of drover is, in one place: the version people see (--version, the
 * status reply, drover_build_info) and the format of the state it hands to its successor on
 * an upgrade in place (handover.h). Both are compile-time facts of one binary; keeping them in
 * one small file lets the tests build a second drover that differs only here.
 */
#pragma once

extern const char drover_version[];
/* The handover format this binary writes, and the only one it reads. */
extern const unsigned drover_handover_version;
