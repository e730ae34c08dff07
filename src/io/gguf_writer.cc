#include "io/gguf_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace g4 {

namespace {

template <typename T>
void put(std::string& s, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // x86-64 and AArch64 are little-endian, as GGUF
  s.append(b, sizeof(T));
}

void put_str(std::string& s, std::string_view v) {
  put<uint64_t>(s, v.size());
  s.append(v.data(), v.size());
}

// Re-encodes a scalar from the widened fields GgufFile fills in.
void put_scalar(std::string& s, const GgufValue& v) {
  switch (v.type) {
    case GgufType::kU8:
    case GgufType::kBool:
      return put<uint8_t>(s, uint8_t(v.u));
    case GgufType::kI8:
      return put<int8_t>(s, int8_t(v.i));
    case GgufType::kU16:
      return put<uint16_t>(s, uint16_t(v.u));
    case GgufType::kI16:
      return put<int16_t>(s, int16_t(v.i));
    case GgufType::kU32:
      return put<uint32_t>(s, uint32_t(v.u));
    case GgufType::kI32:
      return put<int32_t>(s, int32_t(v.i));
    case GgufType::kU64:
      return put<uint64_t>(s, v.u);
    case GgufType::kI64:
      return put<int64_t>(s, v.i);
    case GgufType::kF32:
      return put<float>(s, float(v.f));
    case GgufType::kF64:
      return put<double>(s, v.f);
    default:
      return;
  }
}

uint64_t pad(uint64_t x, uint64_t a) {
  return (x + a - 1) / a * a;
}

}  // namespace

GgufWriter::~GgufWriter() {
  discard();
}

void GgufWriter::put_kv(const std::string& key, std::string bytes) {
  for (auto& [k, b] : kv_) {
    if (k == key) {
      b = std::move(bytes);
      return;
    }
  }
  kv_.emplace_back(key, std::move(bytes));
}

bool GgufWriter::has_kv(const std::string& key) const {
  for (const auto& kv : kv_)
    if (kv.first == key) return true;
  return false;
}

Status GgufWriter::copy_kv(const std::string& key, const GgufValue& v) {
  std::string b;
  put<uint32_t>(b, uint32_t(v.type));
  if (v.type == GgufType::kString) {
    put_str(b, v.str);
  } else if (v.type == GgufType::kArray) {
    if (v.elem_type == GgufType::kArray)
      return Status::error("metadata key '" + key + "' is a nested array, which is not supported");
    put<uint32_t>(b, uint32_t(v.elem_type));
    put<uint64_t>(b, v.count);
    if (v.elem_type == GgufType::kString) {
      if (v.strings.size() != v.count)
        return Status::error("metadata key '" + key + "': string array is inconsistent");
      for (const auto& s : v.strings) put_str(b, s);
    } else {
      const size_t es = gguf_scalar_size(v.elem_type);
      if (es == 0 || (v.count > 0 && v.elems == nullptr))
        return Status::error("metadata key '" + key + "': unsupported array element type");
      b.append(reinterpret_cast<const char*>(v.elems), size_t(v.count) * es);
    }
  } else if (gguf_scalar_size(v.type) != 0) {
    put_scalar(b, v);
  } else {
    return Status::error("metadata key '" + key + "': unsupported value type");
  }
  put_kv(key, std::move(b));
  return {};
}

void GgufWriter::set_u32(const std::string& key, uint32_t v) {
  std::string b;
  put<uint32_t>(b, uint32_t(GgufType::kU32));
  put<uint32_t>(b, v);
  put_kv(key, std::move(b));
  if (key == "general.alignment") alignment_ = v;
}

void GgufWriter::set_string(const std::string& key, const std::string& v) {
  std::string b;
  put<uint32_t>(b, uint32_t(GgufType::kString));
  put_str(b, v);
  put_kv(key, std::move(b));
}

Status GgufWriter::add_tensor(const std::string& name, int n_dims, const std::array<int64_t, 4>& ne,
                              DType type) {
  if (f_ != nullptr) return Status::error("add_tensor after begin()");
  if (name.empty() || name.size() >= 64)
    return Status::error("tensor name '" + name + "' must have 1 to 63 bytes");
  for (const auto& t : tensors_)
    if (t.name == name) return Status::error("duplicate tensor name '" + name + "'");
  if (n_dims < 1 || n_dims > 4) return Status::error("tensor '" + name + "': bad n_dims");
  const auto ti = dtype_info(uint32_t(type));
  if (!ti) return Status::error("tensor '" + name + "': unknown type");
  int64_t n = 1;
  for (int d = 0; d < 4; ++d) {
    if (ne[d] <= 0 || (d >= n_dims && ne[d] != 1))
      return Status::error("tensor '" + name + "': bad shape");
    n *= ne[d];
  }
  if (ne[0] % ti->block != 0)
    return Status::error("tensor '" + name + "': row of " + std::to_string(ne[0]) +
                         " is not a multiple of the " + ti->name + " block");
  TensorInfo t{name, n_dims, ne, type, 0, uint64_t(n / ti->block) * uint64_t(ti->block_bytes)};
  tensors_.push_back(std::move(t));
  return {};
}

uint64_t GgufWriter::file_size() const {
  uint64_t hdr = 4 + 4 + 8 + 8;
  for (const auto& [k, b] : kv_) hdr += 8 + k.size() + b.size();
  uint64_t data = 0;
  for (const auto& t : tensors_) {
    hdr += 8 + t.name.size() + 4 + 8 * uint64_t(t.n_dims) + 4 + 8;
    data += pad(t.nbytes, alignment_);
  }
  return (tensors_.empty() ? hdr : pad(hdr, alignment_)) + data;
}

Status GgufWriter::fail(const std::string& what) {
  const std::string msg = "cannot write '" + path_ + "': " + what;
  failed_ = true;
  discard();
  return Status::error(msg);
}

void GgufWriter::discard() {
  if (f_ != nullptr) {
    std::fclose(f_);
    f_ = nullptr;
    std::remove(tmp_path_.c_str());
  }
}

Status GgufWriter::write_raw(const void* p, size_t n) {
  if (n > 0 && std::fwrite(p, 1, n, f_) != n) return fail(std::strerror(errno));
  pos_ += n;
  return {};
}

Status GgufWriter::pad_to(uint64_t target) {
  static const char zeros[64] = {};
  while (pos_ < target) {
    const size_t k = size_t(std::min<uint64_t>(sizeof(zeros), target - pos_));
    if (auto s = write_raw(zeros, k); !s.ok()) return s;
  }
  return {};
}

Status GgufWriter::begin(const std::string& path) {
  if (f_ != nullptr || failed_) return Status::error("GgufWriter::begin called twice");
  if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0)
    return Status::error("general.alignment must be a power of two");
  path_ = path;
  tmp_path_ = path + ".tmp";
  f_ = std::fopen(tmp_path_.c_str(), "wb");
  if (f_ == nullptr) {
    const std::string err = std::strerror(errno);
    return Status::error("cannot write '" + path + "': " + err);
  }
  buf_.resize(1 << 20);  // big stdio buffer: few syscalls
  std::setvbuf(f_, buf_.data(), _IOFBF, buf_.size());
  uint64_t off = 0;
  for (auto& t : tensors_) {
    t.offset = off;
    off += pad(t.nbytes, alignment_);
  }
  std::string h;
  put<uint32_t>(h, 0x46554747);  // "GGUF"
  put<uint32_t>(h, 3);
  put<int64_t>(h, int64_t(tensors_.size()));
  put<int64_t>(h, int64_t(kv_.size()));
  for (const auto& [k, b] : kv_) {
    put_str(h, k);
    h += b;
  }
  for (const auto& t : tensors_) {
    put_str(h, t.name);
    put<uint32_t>(h, uint32_t(t.n_dims));
    for (int d = 0; d < t.n_dims; ++d) put<int64_t>(h, t.ne[d]);
    put<int32_t>(h, int32_t(t.type));
    put<uint64_t>(h, t.offset);
  }
  if (auto s = write_raw(h.data(), h.size()); !s.ok()) return s;
  if (!tensors_.empty()) {
    if (auto s = pad_to(pad(pos_, alignment_)); !s.ok()) return s;
  }
  data_start_ = pos_;
  cur_ = 0;
  cur_done_ = 0;
  return {};
}

Status GgufWriter::write(const void* data, size_t n) {
  if (f_ == nullptr) return Status::error("GgufWriter::write without begin()");
  if (cur_ >= tensors_.size() || cur_done_ + n > tensors_[cur_].nbytes)
    return fail("more tensor data than the tensor infos declare");
  if (auto s = write_raw(data, n); !s.ok()) return s;
  cur_done_ += n;
  if (cur_done_ == tensors_[cur_].nbytes) {
    if (auto s = pad_to(data_start_ + tensors_[cur_].offset + pad(cur_done_, alignment_)); !s.ok())
      return s;
    ++cur_;
    cur_done_ = 0;
  }
  return {};
}

Status GgufWriter::finish() {
  if (f_ == nullptr) return Status::error("GgufWriter::finish without begin()");
  if (cur_ != tensors_.size())
    return fail("tensor '" + tensors_[cur_].name + "' was not completely written");
  if (std::fflush(f_) != 0) return fail(std::strerror(errno));
  if (std::fclose(f_) != 0) {
    f_ = nullptr;
    std::remove(tmp_path_.c_str());
    return Status::error("cannot write '" + path_ + "': " + std::strerror(errno));
  }
  f_ = nullptr;
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    const std::string err = std::strerror(errno);
    std::remove(tmp_path_.c_str());
    return Status::error("cannot write '" + path_ + "': " + err);
  }
  return {};
}

}  // namespace g4
