// A seeded generator of untrusted tool outputs for measuring the prompt-injection detector
// (src/guard/injection.h): benign carriers (web pages, JSON API results, code, emails, with
// hard negatives such as badges, RTL scripts, emoji ZWJ sequences, YAML keys, "you are now
// viewing page 2") and the same carriers with one attack planted (override phrases in many
// wordings, role markup, special-token strings, exfiltration links, Unicode tag smuggling, bidi
// controls, zero-width and soft-hyphen splits, homoglyphs, leetspeak, spaced letters).
// Deterministic for a seed (own PRNG arithmetic, no std distributions).
//
// Every phrase pool is split in two by index parity: kDev draws the even entries, kHeldOut the
// odd ones, so the detector can be tuned on kDev and measured on wordings and carriers it never
// saw (`g4 eval injection --split heldout`).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace g4 {

enum class CorpusSplit { kDev, kHeldOut };

struct InjectionSample {
  std::string text;
  bool hostile = false;
  std::string carrier;  // web, json, code, email
  std::string attack;   // "" for benign; override, role_markup, special_token, exfiltration,
                        // tag_smuggling, bidi, zero_width, homoglyph, leetspeak, spaced
};

std::vector<InjectionSample> generate_injection_corpus(uint64_t seed, int n_benign, int n_hostile,
                                                       CorpusSplit split);

struct DetectionCounts {
  int tp = 0, fp = 0, fn = 0, tn = 0;
  double precision() const { return tp + fp ? double(tp) / (tp + fp) : 0.0; }
  double recall() const { return tp + fn ? double(tp) / (tp + fn) : 0.0; }
};

}  // namespace g4
