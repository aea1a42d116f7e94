// The emulator's GPU cost model. While a CostModel is active, every access a
// kernel makes through csrc/cuda/device_memory.cuh is logged per thread with
// its call site, and every multiply-add, add, shuffle and barrier is counted.
// When a block has finished, each warp's logs are lined up lane against lane
// into warp-level requests: the n-th dynamic instance of a call site in one
// lane belongs to the same instruction as the n-th instance in the others
// (exact for kernels that follow device_memory.cuh's rules), and a request is
// costed as Nsight Compute counts it:
// - global: the distinct 32-byte sectors its active lanes touch, and the
//   ideal: the fewest sectors that hold the distinct 4-byte words it asks for
//   (equal for aligned, contiguous rows; more for a misaligned start or gaps);
// - shared: 32 banks of 4-byte words; a request of 4-byte (or narrower)
//   accesses is one group of 32 lanes, of 8-byte accesses two groups of 16
//   lanes (half warps), of 16-byte accesses four groups of 8; a group takes as
//   many wavefronts as the most distinct words any one bank holds (lanes on
//   the same word share it: broadcast); bank conflicts = wavefronts - the
//   groups with an active lane (the ideal: 1, 2 or 4 for a full warp).
// Only the first `fraction` of every grid's blocks (in linear block order)
// run while profiling; LaunchCost says how many, so figures can be scaled.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cxxabi.h>
#include <dlfcn.h>
#include <mutex>
#include <source_location>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace mula::emu {

using Site = std::source_location;

struct Access {
  const char* file;
  std::uint32_t line, column;
  std::uintptr_t address;
  std::uint32_t bytes;
  bool store, active;
};

// Per-thread counts (summed over threads in a LaunchCost), and warp-level
// instructions for shuffles and barriers (in a LaunchCost: summed over warps
// of the most any lane executed).
struct OperationCounts {
  std::uint64_t fp32_fma = 0, fp32_add = 0, fp64_fma = 0, fp64_add = 0, shuffles = 0, barriers = 0;
  void add(const OperationCounts& o) {
    fp32_fma += o.fp32_fma, fp32_add += o.fp32_add, fp64_fma += o.fp64_fma;
    fp64_add += o.fp64_add, shuffles += o.shuffles, barriers += o.barriers;
  }
};

struct ThreadLog {
  std::vector<Access> accesses;
  OperationCounts operations;
};

struct MemoryCounts {
  std::uint64_t requests = 0;
  std::uint64_t sectors = 0;           // global: 32-byte sectors over all requests
  std::uint64_t ideal_sectors = 0;     // global: the fewest that hold each request's words
  std::uint64_t wavefronts = 0;        // shared
  std::uint64_t ideal_wavefronts = 0;  // shared: without bank conflicts
  std::uint64_t words = 0;             // 4-byte words the active lanes move
  void add(const MemoryCounts& o) {
    requests += o.requests, sectors += o.sectors, ideal_sectors += o.ideal_sectors;
    wavefronts += o.wavefronts;
    ideal_wavefronts += o.ideal_wavefronts, words += o.words;
  }
};

struct LaunchCost {
  std::string kernel;
  std::uint64_t grid_blocks = 0, profiled_blocks = 0, threads_per_block = 0, shared_bytes = 0;
  MemoryCounts global_load, global_store, shared_load, shared_store;
  std::uint64_t distinct_global_bytes = 0;  // 32-byte sectors touched at least once, in bytes
  OperationCounts threads;                  // summed over threads
  std::uint64_t shuffle_instructions = 0, barrier_instructions = 0;  // warp-level
  std::vector<std::uint64_t> sectors;  // every global sector touched (deduplicated at the end)
};

// Profiles the launches made while it is active (one at a time per process).
struct CostModel {
  explicit CostModel(double fraction_ = 1.0) : fraction(fraction_) { active() = this; }
  ~CostModel() { active() = nullptr; }
  CostModel(const CostModel&) = delete;
  CostModel& operator=(const CostModel&) = delete;
  static CostModel*& active() {
    static CostModel* model = nullptr;
    return model;
  }
  std::uint64_t profiled_blocks(std::uint64_t blocks) const {
    // Rounded up, but a product a rounding error above a whole number is that number.
    const auto wanted = static_cast<std::uint64_t>(std::ceil(double(blocks) * fraction - 1e-6));
    return std::clamp<std::uint64_t>(wanted, 1, blocks);
  }
  double fraction;
  std::vector<LaunchCost> launches;
  std::mutex mutex;  // warps of a block are analysed concurrently
};

inline thread_local ThreadLog* current_log = nullptr;

inline void count_access(const void* address, std::size_t bytes, bool store, bool active,
                         const Site& site) {
  if (current_log == nullptr) return;
  current_log->accesses.push_back({site.file_name(), site.line(), site.column(),
                                   reinterpret_cast<std::uintptr_t>(address),
                                   static_cast<std::uint32_t>(bytes), store, active});
}

template <typename T>
void count_arithmetic(bool fused) {
  if (current_log == nullptr) return;
  OperationCounts& ops = current_log->operations;
  if constexpr (std::is_same_v<T, double>) {
    ++(fused ? ops.fp64_fma : ops.fp64_add);
  } else if constexpr (std::is_same_v<T, float>) {
    ++(fused ? ops.fp32_fma : ops.fp32_add);
  }
}

// "forward_kernel<float, 7>" for a kernel's address (the executable must
// export its symbols: -rdynamic), or its address when it has no symbol.
inline std::string kernel_name(const void* kernel) {
  Dl_info info{};
  if (dladdr(kernel, &info) == 0 || info.dli_sname == nullptr) {
    return "kernel@" + std::to_string(reinterpret_cast<std::uintptr_t>(kernel));
  }
  int status = 0;
  char* demangled = abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status);
  std::string name = status == 0 ? demangled : info.dli_sname;
  std::free(demangled);
  name = name.substr(0, name.find('('));  // drop the parameter list
  const std::size_t template_start = name.find('<');
  const std::size_t scope = name.rfind("::", template_start);
  if (scope != std::string::npos) name = name.substr(scope + 2);  // and the namespaces
  const std::size_t space = name.find(' ');  // "void " of a function template
  if (space != std::string::npos && space < name.find('<')) name = name.substr(space + 1);
  return name;
}

namespace cost_detail {

// Sorts and deduplicates values; returns how many remain.
inline std::uint64_t distinct(std::vector<std::uint64_t>& values) {
  std::sort(values.begin(), values.end());
  values.erase(std::unique(values.begin(), values.end()), values.end());
  return values.size();
}

// Wavefronts of one shared-memory request (its active lanes and their accesses).
inline void cost_shared(const std::vector<std::pair<unsigned, const Access*>>& lanes,
                        std::uintptr_t shared_begin, MemoryCounts& counts) {
  const std::uint32_t words_per_lane = std::max<std::uint32_t>(1, lanes.front().second->bytes / 4);
  const unsigned lanes_per_group = 32 / std::min<std::uint32_t>(words_per_lane, 4);
  std::vector<std::uint64_t> groups[4];  // bank << 40 | word, per group of lanes
  for (const auto& [lane, access] : lanes) {
    const std::uint64_t first_word = (access->address - shared_begin) / 4;
    for (std::uint32_t w = 0; w < words_per_lane; ++w) {
      const std::uint64_t word = first_word + w;
      groups[std::min(lane / lanes_per_group, 3u)].push_back((word % 32) << 40 | word);
    }
    counts.words += words_per_lane;
  }
  for (auto& group : groups) {
    if (group.empty()) continue;
    distinct(group);
    std::uint64_t most = 0, run = 0, bank = ~std::uint64_t{0};
    for (const std::uint64_t entry : group) {
      run = (entry >> 40) == bank ? run + 1 : 1;
      bank = entry >> 40;
      most = std::max(most, run);
    }
    counts.wavefronts += most;
    counts.ideal_wavefronts += 1;
  }
  counts.requests += 1;
}

}  // namespace cost_detail

// Lines up the logs of one warp's lanes into requests and adds their cost.
inline void analyse_warp(ThreadLog* lanes, unsigned lane_count, std::uintptr_t shared_begin,
                         std::uintptr_t shared_end, LaunchCost& total, std::mutex& mutex) {
  struct SiteHash {
    std::size_t operator()(const Access* a) const {
      return std::hash<const void*>()(a->file) ^ (std::size_t(a->line) << 16) ^ a->column;
    }
  };
  struct SiteEqual {
    bool operator()(const Access* a, const Access* b) const {
      return a->file == b->file && a->line == b->line && a->column == b->column;
    }
  };
  std::unordered_map<const Access*, std::uint64_t, SiteHash, SiteEqual> sites;
  // (site << 40 | instance << 5 | lane) sorts a warp's accesses into requests.
  std::vector<std::pair<std::uint64_t, const Access*>> keyed;
  LaunchCost warp;
  std::uint64_t shuffles = 0, barriers = 0;
  for (unsigned lane = 0; lane < lane_count; ++lane) {
    std::vector<std::uint64_t> instances;
    for (const Access& access : lanes[lane].accesses) {
      const std::uint64_t site = sites.emplace(&access, sites.size()).first->second;
      if (site >= instances.size()) instances.resize(site + 1, 0);
      keyed.emplace_back(site << 40 | instances[site]++ << 5 | lane, &access);
    }
    warp.threads.add(lanes[lane].operations);
    shuffles = std::max(shuffles, lanes[lane].operations.shuffles);
    barriers = std::max(barriers, lanes[lane].operations.barriers);
  }
  std::sort(keyed.begin(), keyed.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::pair<unsigned, const Access*>> request;
  std::vector<std::uint64_t> sectors, words;
  for (std::size_t begin = 0; begin < keyed.size();) {
    std::size_t end = begin;
    request.clear();
    for (; end < keyed.size() && keyed[end].first >> 5 == keyed[begin].first >> 5; ++end) {
      if (keyed[end].second->active) request.emplace_back(keyed[end].first & 31, keyed[end].second);
    }
    begin = end;
    if (request.empty()) continue;  // predicated off in every lane: no request
    const Access& first = *request.front().second;
    const bool shared = first.address >= shared_begin && first.address < shared_end;
    if (shared) {
      cost_detail::cost_shared(request, shared_begin, first.store ? warp.shared_store : warp.shared_load);
      continue;
    }
    sectors.clear();
    words.clear();
    MemoryCounts& counts = first.store ? warp.global_store : warp.global_load;
    for (const auto& [lane, access] : request) {
      for (std::uint64_t s = access->address / 32; s <= (access->address + access->bytes - 1) / 32; ++s)
        sectors.push_back(s);
      for (std::uint64_t w = access->address / 4; w <= (access->address + access->bytes - 1) / 4; ++w)
        words.push_back(w);
      counts.words += std::max<std::uint32_t>(1, access->bytes / 4);
    }
    counts.requests += 1;
    counts.sectors += cost_detail::distinct(sectors);
    counts.ideal_sectors += (cost_detail::distinct(words) + 7) / 8;  // 8 words per sector
    warp.sectors.insert(warp.sectors.end(), sectors.begin(), sectors.end());
  }
  cost_detail::distinct(warp.sectors);
  for (unsigned lane = 0; lane < lane_count; ++lane) lanes[lane] = ThreadLog{};
  const std::lock_guard<std::mutex> lock(mutex);
  total.global_load.add(warp.global_load);
  total.global_store.add(warp.global_store);
  total.shared_load.add(warp.shared_load);
  total.shared_store.add(warp.shared_store);
  total.threads.add(warp.threads);
  total.shuffle_instructions += shuffles;
  total.barrier_instructions += barriers;
  total.sectors.insert(total.sectors.end(), warp.sectors.begin(), warp.sectors.end());
}

// One launch's counts as a JSON object (the fields above, memory counts nested).
inline std::string to_json(const LaunchCost& c) {
  auto field = [](const char* name, std::uint64_t value) {
    return "\"" + std::string(name) + "\": " + std::to_string(value);
  };
  auto memory = [&](const char* name, const MemoryCounts& m) {
    return "\"" + std::string(name) + "\": {" + field("requests", m.requests) + ", " +
           field("sectors", m.sectors) + ", " + field("ideal_sectors", m.ideal_sectors) + ", " +
           field("wavefronts", m.wavefronts) + ", " +
           field("ideal_wavefronts", m.ideal_wavefronts) + ", " + field("words", m.words) + "}";
  };
  const OperationCounts& t = c.threads;
  return "{\"kernel\": \"" + c.kernel + "\", " + field("grid_blocks", c.grid_blocks) + ", " +
         field("profiled_blocks", c.profiled_blocks) + ", " +
         field("threads_per_block", c.threads_per_block) + ", " +
         field("shared_bytes", c.shared_bytes) + ", " + memory("global_load", c.global_load) +
         ", " + memory("global_store", c.global_store) + ", " +
         memory("shared_load", c.shared_load) + ", " + memory("shared_store", c.shared_store) +
         ", " + field("distinct_global_bytes", c.distinct_global_bytes) + ", " +
         field("fp32_fma", t.fp32_fma) + ", " + field("fp32_add", t.fp32_add) + ", " +
         field("fp64_fma", t.fp64_fma) + ", " + field("fp64_add", t.fp64_add) + ", " +
         field("shuffle_instructions", c.shuffle_instructions) + ", " +
         field("barrier_instructions", c.barrier_instructions) + "}";
}

}  // namespace mula::emu
