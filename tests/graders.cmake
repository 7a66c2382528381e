# tests/graders.cmake: grader test plugins (fault injection, a known-answer
# grader, broken plugins) and the example graders, built into
# ${PROJECT_BINARY_DIR}/tests/faults and ${PROJECT_BINARY_DIR}/examples.
foreach(p fault good bad_abi no_symbol)
  add_library(rftt_${p} MODULE ${CMAKE_CURRENT_SOURCE_DIR}/faults/${p}.c)
  target_include_directories(rftt_${p} PRIVATE ${PROJECT_SOURCE_DIR}/graders)
  set_target_properties(rftt_${p} PROPERTIES PREFIX "" OUTPUT_NAME "${p}"
                        LIBRARY_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests/faults)
endforeach()

# graders/examples: the countdown grader and the copyable test harness, checked
# against TinyZero's scoring (tests/fixtures/countdown_cases.jsonl, made by
# tools/ref_countdown.py)
add_library(rftx_countdown MODULE ${PROJECT_SOURCE_DIR}/graders/examples/countdown.c)
target_include_directories(rftx_countdown PRIVATE ${PROJECT_SOURCE_DIR}/graders)
target_link_libraries(rftx_countdown PRIVATE m)
set_target_properties(rftx_countdown PROPERTIES PREFIX "" OUTPUT_NAME "countdown"
                      LIBRARY_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/examples)
add_executable(grader_test ${PROJECT_SOURCE_DIR}/graders/examples/grader_test.c)
target_include_directories(grader_test PRIVATE ${PROJECT_SOURCE_DIR}/graders)
target_link_libraries(grader_test PRIVATE PkgConfig::JANSSON ${CMAKE_DL_LIBS} m)
set_target_properties(grader_test PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/examples)
add_test(NAME example_countdown
         COMMAND grader_test ${PROJECT_BINARY_DIR}/examples/countdown.so tests/fixtures/countdown_cases.jsonl
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})

# the tests load these at run time: build them before any test
foreach(t ${RFT_TESTS})
  get_filename_component(tn ${t} NAME_WE)
  if(tn MATCHES "^test_(grader|reward|cmd_grade)")
    add_dependencies(${tn} rftt_fault rftt_good rftt_bad_abi rftt_no_symbol rftx_countdown)
  endif()
endforeach()

# cmake --install gives grader authors the header, pkg-config and CMake package
add_test(NAME grader_install COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/faults/install_check.sh ${PROJECT_BINARY_DIR}
         ${PROJECT_SOURCE_DIR})
