#include "huge_pages.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace mula::cpu {
namespace {

#if defined(__linux__) && defined(MADV_HUGEPAGE)
// The huge page size when the system gives huge pages only to memory that
// asks (`madvise` mode), else 0.
std::uintptr_t huge_page_bytes_on_request() {
  std::string enabled;
  std::getline(std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled"), enabled);
  if (enabled.find("[madvise]") == std::string::npos) return 0;
  std::uintptr_t bytes = 0;
  std::ifstream("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size") >> bytes;
  return bytes;
}
#endif

}  // namespace

void advise_huge_pages(void* data, std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  static const std::uintptr_t huge = huge_page_bytes_on_request();
  const char* setting = std::getenv("MULA_CPU_HUGE_PAGES");  // read at every call, like MULA_CPU_ISA
  if (huge == 0 || (setting != nullptr && std::strcmp(setting, "0") == 0)) return;
  const auto first = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t begin = (first + huge - 1) / huge * huge;
  const std::uintptr_t end = (first + bytes) / huge * huge;
  if (end <= begin) return;
  unsigned char resident = 0;
  if (mincore(reinterpret_cast<void*>(begin), 1, &resident) != 0 || (resident & 1) != 0) return;
  madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace mula::cpu
