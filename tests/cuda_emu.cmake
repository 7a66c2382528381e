# tests/cuda_emu.cmake: the CUDA backend's kernels run without a GPU. The
# sources of kernels/cuda are compiled a second time as plain C++ against
# kernels/cuda/cuda_emu.h (a CPU emulation of the CUDA subset they use:
# blocks in turn, threads as fibers switched at barriers and shuffles), and
# tests/gpu/test_cuda_ops.c runs against that library: every kernel's
# indexing, masking, tiling and launch shape is checked against the CPU
# backend on every CI run. Speed and real-device behaviour stay with
# tests/gpu (tools/gpu_check.sh).
include(CheckLanguage)
check_language(CXX)
if(CMAKE_CXX_COMPILER)
  enable_language(CXX)
  file(GLOB RFT_CUDA_EMU_SRC CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/kernels/cuda/*.cu)
  set_source_files_properties(${RFT_CUDA_EMU_SRC} PROPERTIES LANGUAGE CXX)
  add_library(rft_cuda_emu STATIC ${RFT_CUDA_EMU_SRC})
  set_target_properties(rft_cuda_emu PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON CXX_EXTENSIONS ON)
  target_compile_definitions(rft_cuda_emu PRIVATE RFT_CUDA_EMU=1)
  target_compile_options(rft_cuda_emu PRIVATE -x c++ -U_FORTIFY_SOURCE -O2 -Wno-unknown-pragmas -Wno-unused-function)
  target_include_directories(rft_cuda_emu PRIVATE ${PROJECT_SOURCE_DIR}/kernels)
  # x86 loads anything at any address; the GPU faults on a misaligned vector
  # or 4-byte access ("misaligned address"). UBSan's alignment check makes the
  # emulated kernels stop there too (the vector types in cuda_emu.h carry the
  # device's alignment).
  target_compile_options(rft_cuda_emu PRIVATE -fsanitize=alignment -fno-sanitize-recover=alignment)
  target_link_options(rft_cuda_emu PUBLIC -fsanitize=alignment)
  # the emulated backend_cuda_create comes first on the link line; the CPU
  # backend and the model come from rftcore / rft_kernels
  foreach(t test_cuda_ops test_cuda_model)
    add_executable(emu_${t} ${PROJECT_SOURCE_DIR}/tests/gpu/${t}.c)
    target_link_libraries(emu_${t} PRIVATE rft_cuda_emu rftcore)
    set_target_properties(emu_${t} PROPERTIES LINKER_LANGUAGE CXX)
    add_test(NAME emu_${t} COMMAND emu_${t} WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
    set_tests_properties(emu_${t} PROPERTIES LABELS emu TIMEOUT 120
                         ENVIRONMENT "RFT_TEST_QUICK=1;OMP_WAIT_POLICY=passive")
  endforeach()
  # rft itself on the emulated device: tests/test_train_emu.c runs `device:
  # cuda` training steps through it (the trainer's device paths end to end)
  add_executable(emu_rft ${PROJECT_SOURCE_DIR}/trainer/main.c)
  target_link_libraries(emu_rft PRIVATE rft_cuda_emu rftcore)
  set_target_properties(emu_rft PROPERTIES LINKER_LANGUAGE CXX RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR})
  # main.c does not name the backend: make the linker take the emulated one
  # from the first archive before rftcore's reference reaches rft_kernels
  target_link_options(emu_rft PRIVATE -Wl,--undefined=backend_cuda_create)
  set_property(TEST test_train_emu APPEND PROPERTY ENVIRONMENT "RFT_EMU_BIN=${PROJECT_BINARY_DIR}/emu_rft")
  set_property(TEST test_train_emu APPEND PROPERTY LABELS emu)
endif()
