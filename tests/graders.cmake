# tests/graders.cmake: grader test plugins (fault injection, a known-answer
# grader, broken plugins) and the example graders, built into
# ${PROJECT_BINARY_DIR}/tests/faults and ${PROJECT_BINARY_DIR}/examples.
foreach(p fault good bad_abi no_symbol)
  add_library(rftt_${p} MODULE ${CMAKE_CURRENT_SOURCE_DIR}/faults/${p}.c)
  target_include_directories(rftt_${p} PRIVATE ${PROJECT_SOURCE_DIR}/graders)
  set_target_properties(rftt_${p} PROPERTIES PREFIX "" OUTPUT_NAME "${p}"
                        LIBRARY_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests/faults)
endforeach()
# the tests load these at run time: build them before any test
foreach(t ${RFT_TESTS})
  get_filename_component(tn ${t} NAME_WE)
  if(tn MATCHES "^test_(grader|reward|cmd_grade)")
    add_dependencies(${tn} rftt_fault rftt_good rftt_bad_abi rftt_no_symbol)
  endif()
endforeach()
