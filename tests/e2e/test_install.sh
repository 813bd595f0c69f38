#!/usr/bin/env bash
# test_install.sh -- what `make install PREFIX=DIR` (cmake --install) puts
# under a prefix works from there, as installed: the program runs, the man
# page renders, and a small C program that runs a one-task flow builds and
# runs against it twice, with `pkg-config --cflags --libs libflow` and with a
# CMake project (find_package(libflow): libflow::flow, libflow::flow_static).
# A DESTDIR install stages the same tree, its libflow.pc working from there.
# Not under sanitizers: a program built without them cannot load a library
# built with them.
set -u
source "$(dirname "$0")/lib.sh"
cd "$T"
if [ -n "${FLOW_SANITIZE:-}" ]; then
    echo "skip: a sanitizer build ($FLOW_SANITIZE)"
    finish
    exit
fi
P=$T/prefix

rc=0; cmake --install "$FLOW_BUILD_DIR" --prefix "$P" >install.log 2>err || rc=$?
check "cmake --install into a temp prefix ($rc)" [ "$rc" = 0 ]
for f in bin/flow lib/libflow.so lib/libflow.a include/flow.h share/man/man1/flow.1 \
    lib/pkgconfig/libflow.pc lib/cmake/libflow/libflowConfig.cmake \
    lib/cmake/libflow/libflowConfigVersion.cmake lib/cmake/libflow/libflowTargets.cmake \
    share/bash-completion/completions/flow share/zsh/site-functions/_flow; do
    check "installed $f" [ -e "$P/$f" ]
done
version=$("$FLOW" --version | awk '{print $2}')
major=${version%%.*}
check "lib/libflow.so -> libflow.so.$major -> libflow.so.$version" \
    bash -c '[ "$(readlink "$1/lib/libflow.so")" = "libflow.so.$2" ] &&
             [ "$(readlink "$1/lib/libflow.so.$2")" = "libflow.so.$3" ] &&
             [ -f "$1/lib/libflow.so.$3" ]' _ "$P" "$major" "$version"
if command -v readelf >/dev/null; then
    check "its soname is libflow.so.$major" \
        bash -c 'readelf -d "$1" | grep -q "SONAME.*\[libflow.so.$2\]"' _ "$P/lib/libflow.so" "$major"
fi
check "the installed flow --version says flow $version" [ "$("$P/bin/flow" --version)" = "flow $version" ]
check "the header's version is the library's" \
    grep -q "#define FLOW_VERSION_STRING \"$version\"" "$P/include/flow.h"
if command -v man >/dev/null; then
    rc=0; MANWIDTH=80 man -l "$P/share/man/man1/flow.1" >man.txt 2>err || rc=$?
    check "man -l renders the installed page ($rc)" bash -c '[ "$1" = 0 ] && grep -q "^NAME" man.txt' _ "$rc"
else
    echo "skip: no man"
fi

# A program that runs a one-task flow (a C function) and prints its result.
cat > hello.c <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <flow.h>

static int greet(flow_ctx *ctx)
{
    return flow_ctx_set_output_take(ctx, json_pack("{s:s}", "hello", "installed")) ? 1 : 0;
}

int main(void)
{
    if (strcmp(flow_version(), FLOW_VERSION_STRING) != 0) {
        fprintf(stderr, "header %s, library %s\n", FLOW_VERSION_STRING, flow_version());
        return 1;
    }
    flow *f = flow_new("hello", NULL);
    flow_task_set_fn(flow_add_task(f, "greet", NULL), greet, NULL);
    json_t *result = NULL;
    flow_error err;
    flow_run_status s = flow_run_simple(f, NULL, 1, &result, &err);
    char *text = s == FLOW_RUN_COMPLETED ? flow_json_dumps(result, JSON_COMPACT) : NULL;
    printf("%s\n", text ? text : err.message);
    free(text);
    json_decref(result);
    flow_free(f);
    return s == FLOW_RUN_COMPLETED ? 0 : 1;
}
C
want='{"hello":"installed"}'

export PKG_CONFIG_PATH=$P/lib/pkgconfig
cc=${CC:-cc}
rc=0; $cc -std=c11 -Wall -Werror -o hello_pc hello.c $(pkg-config --cflags --libs libflow) \
    -Wl,-rpath,"$(pkg-config --variable=libdir libflow)" 2>err || rc=$?
check "cc hello.c \$(pkg-config --cflags --libs libflow) ($rc)" [ "$rc" = 0 ]
out=$(./hello_pc 2>err)
check "the pkg-config build runs the flow: $out" [ "$out" = "$want" ]
check "... with the installed libflow.so" \
    bash -c 'ldd ./hello_pc | grep -q "libflow.so.$2 => $1/lib/"' _ "$(cd "$P" && pwd -P)" "$major"
check "pkg-config --modversion libflow is $version" [ "$(pkg-config --modversion libflow)" = "$version" ]

mkdir cmproj
cp hello.c cmproj/
cat > cmproj/CMakeLists.txt <<'CM'
cmake_minimum_required(VERSION 3.18)
project(hello C)
find_package(libflow 0.1 REQUIRED)
add_executable(hello hello.c)
target_link_libraries(hello PRIVATE libflow::flow)
add_executable(hello_static hello.c)
target_link_libraries(hello_static PRIVATE libflow::flow_static)
CM
rc=0; cmake -S cmproj -B cmbuild -DCMAKE_PREFIX_PATH="$P" >cmake.log 2>&1 || rc=$?
check "a CMake project finds libflow ($rc)" [ "$rc" = 0 ]
rc=0; cmake --build cmbuild >>cmake.log 2>&1 || rc=$?
check "... and builds against libflow::flow and libflow::flow_static ($rc)" [ "$rc" = 0 ]
out=$(cmbuild/hello 2>err)
check "the CMake build (shared) runs the flow: $out" [ "$out" = "$want" ]
out=$(cmbuild/hello_static 2>err)
check "the CMake build (static) runs the flow: $out" [ "$out" = "$want" ]
check "... the static one without libflow.so" bash -c '! ldd cmbuild/hello_static | grep -q libflow'
[ "$FAILED" = 0 ] || tail -20 cmake.log

# DESTDIR stages the tree under another root; its libflow.pc works from there.
rc=0; DESTDIR=$T/stage cmake --install "$FLOW_BUILD_DIR" --prefix /opt/libflow-test \
    >stage.log 2>err || rc=$?
check "a DESTDIR install ($rc) stages under it" [ -x "$T/stage/opt/libflow-test/bin/flow" ]
check "... nothing outside it" [ ! -e /opt/libflow-test ]
rc=0; PKG_CONFIG_PATH=$T/stage/opt/libflow-test/lib/pkgconfig \
    $cc -std=c11 -o hello_stage hello.c \
    $(PKG_CONFIG_PATH=$T/stage/opt/libflow-test/lib/pkgconfig pkg-config --cflags --libs libflow) \
    -Wl,-rpath,"$T/stage/opt/libflow-test/lib" 2>err || rc=$?
out=$(./hello_stage 2>&1)
check "a program built from the staged libflow.pc runs ($rc): $out" [ "$out" = "$want" ]

finish
