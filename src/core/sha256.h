// SHA-256 of a file (OpenSSL EVP), with an optional progress callback (bytes done, total).
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "core/status.h"

namespace g4 {

Result<std::string> sha256_file(const std::string& path,
                                const std::function<void(uint64_t, uint64_t)>& progress = {});

}  // namespace g4
