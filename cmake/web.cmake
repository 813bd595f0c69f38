# web.cmake -- the dashboard of `flow serve` (src/serve/web/) built into C:
# the static library flow_web (src/serve/web.c and the generated
# web_assets.c, see cmake/embed.cmake), for the serve to link. The
# top CMakeLists.txt includes this file; the arrays are made again when a
# file of the page changes.
set(FLOW_WEB_DIR ${CMAKE_CURRENT_SOURCE_DIR}/src/serve/web)
set(FLOW_WEB_FILES index.html app.js style.css favicon.svg)
set(FLOW_WEB_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/cmake/embed.cmake)
# commas, not semicolons: a list would be split into arguments on its way
string(REPLACE ";" "," FLOW_WEB_FILES_ARG "${FLOW_WEB_FILES}")
foreach(name ${FLOW_WEB_FILES})
  list(APPEND FLOW_WEB_DEPENDS ${FLOW_WEB_DIR}/${name})
endforeach()

add_custom_command(
  OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/web_assets.c
  COMMAND ${CMAKE_COMMAND} -DOUT=${CMAKE_CURRENT_BINARY_DIR}/web_assets.c
          -DDIR=${FLOW_WEB_DIR} -DFILES=${FLOW_WEB_FILES_ARG}
          -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake/embed.cmake
  DEPENDS ${FLOW_WEB_DEPENDS}
  COMMENT "Embedding the dashboard (src/serve/web/)"
  VERBATIM)

add_library(flow_web STATIC src/serve/web.c ${CMAKE_CURRENT_BINARY_DIR}/web_assets.c)
target_include_directories(flow_web PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src)
