# graders/package.cmake: what `cmake --install` puts in place for grader
# authors: rft_grader.h (see CMakeLists.txt), a pkg-config file (rft-grader),
# a CMake package (find_package(rft) -> rft::grader) and the example graders.
include(CMakePackageConfigHelpers)
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/rft-grader.pc.in ${CMAKE_CURRENT_BINARY_DIR}/rft-grader.pc @ONLY)
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/rftConfig.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/rftConfig.cmake @ONLY)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/rftConfigVersion.cmake VERSION ${PROJECT_VERSION}
                                 COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/rft-grader.pc DESTINATION lib/pkgconfig)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/rftConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/rftConfigVersion.cmake
        DESTINATION lib/cmake/rft)
install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/examples/countdown.c ${CMAKE_CURRENT_SOURCE_DIR}/examples/grader_test.c
        DESTINATION share/rft/examples)
