# Install libcirrus (the C client: libcirrus.so + libcirrus.a) with its headers, a pkg-config
# file and a CMake package, so that other programs can `find_package(cirrus)` and link
# `cirrus::cirrus` (or `cirrus::cirrus_static`), or use `pkg-config --cflags --libs cirrus`.
# Headers: <cirrus/cirrus.h> and the generated <cirrus/cirrus.pb-c.h> it includes.
include(CMakePackageConfigHelpers)

install(TARGETS cirrus_shared cirrus_static EXPORT cirrusTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES client/cirrus.h ${CMAKE_BINARY_DIR}/proto/cirrus.pb-c.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/cirrus)
install(FILES proto/cirrus.proto DESTINATION ${CMAKE_INSTALL_DATADIR}/cirrus)

install(EXPORT cirrusTargets NAMESPACE cirrus::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/cirrus)
configure_package_config_file(cmake/cirrusConfig.cmake.in
  ${CMAKE_BINARY_DIR}/cirrusConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/cirrus)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/cirrusConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_BINARY_DIR}/cirrusConfig.cmake ${CMAKE_BINARY_DIR}/cirrusConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/cirrus)

# The .pc file finds the prefix from its own place, so an installed tree can be moved
# (`cmake --install build --prefix DIR` works with any DIR).
file(RELATIVE_PATH CIRRUS_PC_TO_PREFIX ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig
     ${CMAKE_INSTALL_PREFIX})
configure_file(cmake/cirrus.pc.in ${CMAKE_BINARY_DIR}/cirrus.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/cirrus.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
