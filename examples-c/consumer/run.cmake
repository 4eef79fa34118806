# ctest driver: install the build tree into a fresh prefix, then configure, build and run the
# consumer project against it. -DBUILD_DIR=... -DSOURCE_DIR=... -DWORK_DIR=... -DZOO=...
file(REMOVE_RECURSE "${WORK_DIR}")
foreach(step
    "${CMAKE_COMMAND};--install;${BUILD_DIR};--prefix;${WORK_DIR}/prefix"
    "${CMAKE_COMMAND};-S;${SOURCE_DIR};-B;${WORK_DIR}/build;-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix"
    "${CMAKE_COMMAND};--build;${WORK_DIR}/build"
    "${WORK_DIR}/build/consumer_shared;${ZOO}"
    "${WORK_DIR}/build/consumer_static;${ZOO}")
  execute_process(COMMAND ${step} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer step failed (${rc}): ${step}")
  endif()
endforeach()
# The pkg-config file must give the installed include and library paths.
set(ENV{PKG_CONFIG_PATH} "${WORK_DIR}/prefix/lib/pkgconfig")
execute_process(COMMAND pkg-config --cflags --libs dgzoo RESULT_VARIABLE rc OUTPUT_VARIABLE pc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0 OR NOT pc MATCHES "-I${WORK_DIR}/prefix/lib/pkgconfig/../../include" OR NOT pc MATCHES "-ldgzoo")
  message(FATAL_ERROR "pkg-config gave '${pc}' (${rc})")
endif()
message(STATUS "pkg-config: ${pc}")
