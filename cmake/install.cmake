# install.cmake -- what `make install PREFIX=DIR` (cmake --install) puts where:
# bin/flow, lib/libflow.so (versioned, with its soname) and lib/libflow.a,
# include/flow.h, share/man/man1/flow.1, the bash and zsh completions,
# lib/pkgconfig/libflow.pc and the CMake package libflow (targets
# libflow::flow and libflow::flow_static). Every path is relative to the
# prefix, so the prefix can still be chosen at install time
# (cmake --install BUILD --prefix DIR) and DESTDIR stages it.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# The header is found in the source tree while building, under the prefix
# once installed.
foreach(t flow_shared flow_static)
  set_property(TARGET ${t} PROPERTY INTERFACE_INCLUDE_DIRECTORIES
               "$<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>"
               "$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>")
endforeach()
set_target_properties(flow_shared PROPERTIES EXPORT_NAME flow)
set_target_properties(flow_static PROPERTIES EXPORT_NAME flow_static)

# The pkg-config modules the library links, found from its link interface
# (pkg_check_modules' PkgConfig::X targets): flow.h includes <jansson.h>, so
# jansson is public; the others are needed only to link the static library.
# A program linking the shared library needs only jansson: the shared
# library's interface is narrowed to it.
get_target_property(FLOW_STATIC_DEPS flow_static INTERFACE_LINK_LIBRARIES)
set(FLOW_PC_REQUIRES "")
set(FLOW_PC_REQUIRES_PRIVATE "")
set(FLOW_CMAKE_PKG_DEPS "")
foreach(dep ${FLOW_STATIC_DEPS})
  if(dep MATCHES "^PkgConfig::(.+)$")
    set(prefix ${CMAKE_MATCH_1})
    set(module ${${prefix}_MODULE_NAME})
    if(NOT module)
      message(FATAL_ERROR "install.cmake: no pkg-config module name for ${dep}")
    endif()
    if(prefix STREQUAL "JANSSON")
      list(APPEND FLOW_PC_REQUIRES ${module})
    else()
      list(APPEND FLOW_PC_REQUIRES_PRIVATE ${module})
    endif()
    string(APPEND FLOW_CMAKE_PKG_DEPS "  libflow_pkg(${prefix} ${module})\n")
  endif()
endforeach()
set_property(TARGET flow_shared PROPERTY INTERFACE_LINK_LIBRARIES PkgConfig::JANSSON)
list(JOIN FLOW_PC_REQUIRES " " FLOW_PC_REQUIRES)
list(JOIN FLOW_PC_REQUIRES_PRIVATE " " FLOW_PC_REQUIRES_PRIVATE)

# libflow.pc finds the prefix from where it is (${pcfiledir}), so it works
# from whatever prefix it was installed under, as installed.
set(FLOW_PC_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(FLOW_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH FLOW_PC_UP "/p/${FLOW_PC_DIR}" "/p")
  string(REGEX REPLACE "/$" "" FLOW_PC_UP "${FLOW_PC_UP}")
  set(FLOW_PC_PREFIX "\${pcfiledir}/${FLOW_PC_UP}")
endif()
configure_file(cmake/libflow.pc.in ${CMAKE_BINARY_DIR}/libflow.pc @ONLY)

set(FLOW_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/libflow)
configure_package_config_file(cmake/libflowConfig.cmake.in
                              ${CMAKE_BINARY_DIR}/libflowConfig.cmake
                              INSTALL_DESTINATION ${FLOW_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/libflowConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)

# The completion scripts, from the program itself (flow completion bash|zsh).
add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/completion/flow.bash
                          ${CMAKE_BINARY_DIR}/completion/_flow
                   COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/completion
                   COMMAND flow completion bash > ${CMAKE_BINARY_DIR}/completion/flow.bash
                   COMMAND flow completion zsh > ${CMAKE_BINARY_DIR}/completion/_flow
                   DEPENDS flow VERBATIM)
add_custom_target(flow_completions ALL DEPENDS ${CMAKE_BINARY_DIR}/completion/flow.bash
                                               ${CMAKE_BINARY_DIR}/completion/_flow)

install(TARGETS flow RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS flow_shared flow_static EXPORT libflowTargets
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES include/flow.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES docs/flow.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${CMAKE_BINARY_DIR}/libflow.pc DESTINATION ${FLOW_PC_DIR})
install(EXPORT libflowTargets NAMESPACE libflow:: DESTINATION ${FLOW_CMAKE_DIR})
install(FILES ${CMAKE_BINARY_DIR}/libflowConfig.cmake
              ${CMAKE_BINARY_DIR}/libflowConfigVersion.cmake
        DESTINATION ${FLOW_CMAKE_DIR})
install(FILES ${CMAKE_BINARY_DIR}/completion/flow.bash
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME flow)
install(FILES ${CMAKE_BINARY_DIR}/completion/_flow
        DESTINATION ${CMAKE_INSTALL_DATADIR}/zsh/site-functions)
