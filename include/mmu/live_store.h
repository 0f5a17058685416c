// The live generation of a store, for a long-running reader (`serve`): each
// call to current() finds the generation CURRENT names now and opens it when
// a build has committed a new one since, so the server follows rebuilds
// without a restart, a whole store at once.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "mmu/store.h"

namespace mmu {

// Safe to share between threads. A caller keeps the Store current() gave it
// for a whole request, so each answer comes from one generation; the
// generation stays pinned (Store::open) until its last request ends, and the
// next build then deletes it.
class LiveStore {
 public:
  // Opens the store now: throws as Store::open.
  explicit LiveStore(const std::string& dir);

  // The Store of the generation CURRENT names. When that generation cannot be
  // opened (a damaged build), the one served so far, with a warning on stderr
  // naming the store and why, once per generation.
  std::shared_ptr<const Store> current();

 private:
  std::string dir_;
  std::mutex mu_;
  std::shared_ptr<const Store> store_;  // of generation gen_
  std::string gen_;
  std::string failed_gen_;  // the last generation that failed to open, warned about once
};

}  // namespace mmu
