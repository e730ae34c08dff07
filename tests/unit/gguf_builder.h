// Builds GGUF images byte by byte for tests (independent of the reader under test).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace g4::test {

struct GgufBuilder {
  std::vector<uint8_t> b;
  template <typename T>
  void put(T v) {
    const size_t n = b.size();
    b.resize(n + sizeof(T));
    std::memcpy(b.data() + n, &v, sizeof(T));
  }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
  }
  void header(uint32_t version, int64_t n_tensors, int64_t n_kv) {
    b.insert(b.end(), {'G', 'G', 'U', 'F'});
    put<uint32_t>(version);
    put<int64_t>(n_tensors);
    put<int64_t>(n_kv);
  }
  void kv_u32(const std::string& k, uint32_t v) {
    str(k);
    put<uint32_t>(4);
    put<uint32_t>(v);
  }
  void kv_i32(const std::string& k, int32_t v) {
    str(k);
    put<uint32_t>(5);
    put<int32_t>(v);
  }
  void kv_f32(const std::string& k, float v) {
    str(k);
    put<uint32_t>(6);
    put<float>(v);
  }
  void kv_bool(const std::string& k, bool v) {
    str(k);
    put<uint32_t>(7);
    put<uint8_t>(v);
  }
  void kv_str(const std::string& k, const std::string& v) {
    str(k);
    put<uint32_t>(8);
    str(v);
  }
  void kv_arr_i32(const std::string& k, const std::vector<int32_t>& v) {
    str(k);
    put<uint32_t>(9);
    put<uint32_t>(5);
    put<uint64_t>(v.size());
    for (int32_t x : v) put<int32_t>(x);
  }
  void kv_arr_f32(const std::string& k, const std::vector<float>& v) {
    str(k);
    put<uint32_t>(9);
    put<uint32_t>(6);
    put<uint64_t>(v.size());
    for (float x : v) put<float>(x);
  }
  void kv_arr_str(const std::string& k, const std::vector<std::string>& v) {
    str(k);
    put<uint32_t>(9);
    put<uint32_t>(8);
    put<uint64_t>(v.size());
    for (const auto& x : v) str(x);
  }
  void tensor(const std::string& name, std::vector<int64_t> ne, uint32_t type, uint64_t offset) {
    str(name);
    put<uint32_t>(uint32_t(ne.size()));
    for (int64_t x : ne) put<int64_t>(x);
    put<uint32_t>(type);
    put<uint64_t>(offset);
  }
  void pad(size_t align) {
    while (b.size() % align) b.push_back(0);
  }
  void bytes(size_t n, uint8_t v = 0) { b.insert(b.end(), n, v); }
};

}  // namespace g4::test
