#include "mmu/live_store.h"

#include <filesystem>
#include <iostream>

#include "mmu/error.h"

namespace mmu {

LiveStore::LiveStore(const std::string& dir) : dir_(dir), store_(Store::open(dir)) {
  gen_ = std::filesystem::path(store_->generation_path()).filename().string();
}

std::shared_ptr<const Store> LiveStore::current() {
  // CURRENT is read on every call (a few microseconds): a commit is seen by
  // the next request, with no polling thread and no stale window.
  std::string gen;
  try {
    gen = live_generation(dir_);
  } catch (const Error& e) {  // CURRENT unreadable: keep answering from the generation held
    const std::string unreadable = "(CURRENT unreadable)";
    std::lock_guard<std::mutex> lock(mu_);
    if (failed_gen_ != unreadable) std::cerr << "warning: " << e.what() << "; still answering from " << gen_ << "\n";
    failed_gen_ = unreadable;
    return store_;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (gen == gen_ || gen == failed_gen_) return store_;
  try {
    store_ = Store::open(dir_);  // a request in flight keeps the old one through its shared_ptr
    gen_ = std::filesystem::path(store_->generation_path()).filename().string();
    failed_gen_.clear();
  } catch (const Error& e) {
    std::cerr << "warning: the new generation " << gen << " cannot be opened (" << e.what()
              << "); still answering from " << gen_ << "\n";
    failed_gen_ = gen;
  }
  return store_;
}

}  // namespace mmu
