# trainer/grader_worker.cmake: rft-grader-worker, the lean executable rft
# starts for process-isolated graders (found next to rft, in
# ../libexec/rft, or in the build tree; rft falls back to re-executing itself).
add_executable(rft-grader-worker ${CMAKE_CURRENT_SOURCE_DIR}/worker/rft_grader_worker.c
               ${CMAKE_CURRENT_SOURCE_DIR}/grader_worker.c ${CMAKE_CURRENT_SOURCE_DIR}/grader_load.c
               ${CMAKE_CURRENT_SOURCE_DIR}/grader_item.c ${CMAKE_CURRENT_SOURCE_DIR}/util.c)
target_include_directories(rft-grader-worker PRIVATE ${CMAKE_CURRENT_SOURCE_DIR} ${PROJECT_SOURCE_DIR}/graders)
target_link_libraries(rft-grader-worker PRIVATE PkgConfig::JANSSON ${CMAKE_DL_LIBS} m)
set_target_properties(rft-grader-worker PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR})
target_compile_definitions(rftcore PUBLIC RFT_GRADER_WORKER_BIN="${PROJECT_BINARY_DIR}/rft-grader-worker")
add_dependencies(rftcore rft-grader-worker)
install(TARGETS rft-grader-worker RUNTIME DESTINATION libexec/rft)
