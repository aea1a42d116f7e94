// Importing mula_ops._C loads this library, which runs the operator
// registrations of the other translation units. The module itself exposes
// nothing (the pattern of pytorch/extension-cpp). Only the Python extension
// has this file; the CMake library for libtorch users does not.
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
