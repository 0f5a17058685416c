// The store's timestamps: ISO 8601 UTC, second resolution. Private to mmu_core.
#pragma once

#include <ctime>
#include <string>

namespace mmu {

inline std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace mmu
