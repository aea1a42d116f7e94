// Cooperative threads for the CUDA emulator: the threads of a block run as
// fibers (ucontext) on the launching OS thread, each until it waits at a
// barrier, when it yields to the next live fiber in turn.
//
// Why: a barrier of 256 OS threads on a 2-core machine costs hundreds of
// context switches through the kernel; a fiber switch is a user-space register
// swap. And the order is fixed: thread 0 runs up to its first barrier before
// thread 1 starts, so a missing __syncthreads reads unwritten shared memory on
// every run instead of now and then. TSan builds keep real threads
// (cuda_emulator.h): races need threads that really run at once. Under ASan
// every switch tells ASan which stack it moves to.
#pragma once

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <tuple>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define MULA_FIBERS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MULA_FIBERS_ASAN 1
#endif
#endif
#if MULA_FIBERS_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

namespace mula::emu {

class Fibers {
 public:
  // Runs body(t) for every t in [0, count) as fibers and returns when all
  // have returned. `locals` is a tuple of references to thread_local
  // variables: each fiber sees its own values of them (saved and restored
  // at every switch).
  template <typename Body, typename... Locals>
  static void run(unsigned int count, Body& body, std::tuple<Locals&...> locals) {
    using Saved = std::tuple<Locals...>;
    struct Closure {
      Body& body;
      std::tuple<Locals&...> locals;
      std::vector<Saved> saved;  // per fiber, then the launching thread's
    } closure{body, locals, std::vector<Saved>(count + 1)};
    closure.saved[count] = Saved(locals);
    Fibers fibers(
        count, &closure, [](void* c, unsigned int t) { static_cast<Closure*>(c)->body(t); },
        [](void* c, unsigned int from, unsigned int to) {
          auto& self = *static_cast<Closure*>(c);
          self.saved[from] = Saved(self.locals);
          self.locals = self.saved[to];
        });
    fibers.run_all();
  }

  // Called by a fiber that waits: lets the other fibers run. Ends the
  // process when every live fiber has yielded since the last call of
  // progress(): none can go on (a barrier that some thread of the block
  // never reaches), where real threads would hang.
  static void yield() {
    Fibers& self = *running();
    if (++self.idle_yields_ > 2 * self.live_) {
      std::fprintf(stderr,
                   "mula CUDA emulator: deadlock, every thread of the block waits at a barrier "
                   "that another thread has left or never reaches (__syncthreads or a warp "
                   "primitive in divergent code?)\n");
      std::_Exit(EXIT_FAILURE);
    }
    self.switch_to(self.next_live(self.current_));
  }

  // Called when a fiber arrives at a barrier.
  static void progress() { running()->idle_yields_ = 0; }

 private:
  using Entry = void (*)(void* closure, unsigned int fiber);
  using Switch = void (*)(void* closure, unsigned int from, unsigned int to);
  static constexpr std::size_t kStackBytes = 256 * 1024;

  // A fiber's stack, with an inaccessible page below it: an overflow faults
  // instead of writing over the next stack. Pages are committed on first use.
  struct Stack {
    Stack() {
      page_ = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
      base_ = mmap(nullptr, page_ + kStackBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (base_ == MAP_FAILED || mprotect(base_, page_, PROT_NONE) != 0) {
        std::fprintf(stderr, "mula CUDA emulator: cannot map a fiber stack\n");
        std::abort();
      }
    }
    ~Stack() { munmap(base_, page_ + kStackBytes); }
    Stack(const Stack&) = delete;
    Stack& operator=(const Stack&) = delete;
    void* top_region() const { return static_cast<char*>(base_) + page_; }
    void* base_;
    std::size_t page_;
  };

  struct Fiber {
    // Not inlined: getcontext returns twice, which no caller's loop should see.
    [[gnu::noinline]] Fiber() {
      getcontext(&context);
      context.uc_stack.ss_sp = stack.top_region();
      context.uc_stack.ss_size = kStackBytes;
      context.uc_link = nullptr;  // start() never returns
      makecontext(&context, &Fibers::start, 0);
    }
    ucontext_t context;
    Stack stack;
    bool done = false;
  };

  Fibers(unsigned int count, void* closure, Entry entry, Switch on_switch)
      : closure_(closure), entry_(entry), on_switch_(on_switch), live_(count) {
    fibers_.reserve(count);
    for (unsigned int t = 0; t < count; ++t) fibers_.push_back(std::make_unique<Fiber>());
  }

  static Fibers*& running() {
    static thread_local Fibers* fibers = nullptr;
    return fibers;
  }

  void run_all() {
    Fibers* const outer = running();
    running() = this;
    current_ = launcher();
    switch_to(0);
    running() = outer;
  }

  unsigned int launcher() const { return static_cast<unsigned int>(fibers_.size()); }

  // The next fiber after `from` that has not returned; the launcher when
  // none is left.
  unsigned int next_live(unsigned int from) const {
    const auto count = static_cast<unsigned int>(fibers_.size());
    for (unsigned int step = 1; step <= count; ++step) {
      const unsigned int t = (from + step) % count;
      if (!fibers_[t]->done) return t;
    }
    return launcher();
  }

  ucontext_t* context_of(unsigned int t) {
    return t == launcher() ? &launcher_context_ : &fibers_[t]->context;
  }

  void switch_to(unsigned int to) {
    const unsigned int from = current_;
    if (from == to) return;
    on_switch_(closure_, from, to);
    current_ = to;
    void* fake_stack = nullptr;
    const bool ending = from != launcher() && fibers_[from]->done;
    leaving_stack(ending ? nullptr : &fake_stack, to);
    swapcontext(context_of(from), context_of(to));
    arrived_on_stack(fake_stack);
  }

  // ASan's fiber protocol: before a switch, the stack switched to (a null
  // fake_stack: the one left ends); after it, on the new stack.
  void leaving_stack([[maybe_unused]] void** fake_stack, [[maybe_unused]] unsigned int to) {
#if MULA_FIBERS_ASAN
    const bool to_launcher = to == launcher();
    __sanitizer_start_switch_fiber(fake_stack,
                                   to_launcher ? launcher_stack_ : fibers_[to]->stack.top_region(),
                                   to_launcher ? launcher_stack_bytes_ : kStackBytes);
#endif
  }
  void arrived_on_stack([[maybe_unused]] void* fake_stack) {
#if MULA_FIBERS_ASAN
    const void* left = nullptr;
    std::size_t left_bytes = 0;
    __sanitizer_finish_switch_fiber(fake_stack, &left, &left_bytes);
    if (launcher_stack_ == nullptr) {  // the first switch is the launcher's
      launcher_stack_ = left;
      launcher_stack_bytes_ = left_bytes;
    }
#endif
  }

  static void start() {
    Fibers& self = *running();
    self.arrived_on_stack(nullptr);
    const unsigned int t = self.current_;
    self.entry_(self.closure_, t);
    self.fibers_[t]->done = true;
    --self.live_;
    self.idle_yields_ = 0;
    self.switch_to(self.next_live(t));  // never comes back
  }

  void* closure_;
  Entry entry_;
  Switch on_switch_;
  std::vector<std::unique_ptr<Fiber>> fibers_;
  ucontext_t launcher_context_{};
  unsigned int current_ = 0;
  unsigned int live_;
  unsigned int idle_yields_ = 0;
  const void* launcher_stack_ = nullptr;  // ASan only
  std::size_t launcher_stack_bytes_ = 0;
};

}  // namespace mula::emu
