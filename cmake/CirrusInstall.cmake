# Install libcirrus (the C client) with its headers, a pkg-config file and a CMake package,
# so that other programs can `find_package(cirrus)` or `pkg-config --libs cirrus`.
include(CMakePackageConfigHelpers)

install(TARGETS cirrus cirrus_common cirrus_proto EXPORT cirrusTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/cirrus)
install(FILES client/cirrus.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/cirrus/client)
install(FILES common/err.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/cirrus/common)
install(FILES ${CMAKE_BINARY_DIR}/proto/cirrus.pb-c.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/cirrus)
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

configure_file(cmake/cirrus.pc.in ${CMAKE_BINARY_DIR}/cirrus.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/cirrus.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
