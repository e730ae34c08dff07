#include <gtest/gtest.h>

#include "runtime/text_stream.h"

namespace g4 {

TEST(StopTextStream, HoldsBackPossibleStopAndCutsAtMatch) {
  StopTextStream s({"</end>", "STOP"});
  std::string out;
  out += s.push("Hello ");
  out += s.push("wor");
  out += s.push("ld </e");
  EXPECT_EQ(out, "Hello world ");  // "</e" may start "</end>": held back
  out += s.push("nd> and more");
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(out, "Hello world ");
  EXPECT_EQ(s.text(), "Hello world ");
  EXPECT_EQ(s.push("x"), "");
}

TEST(StopTextStream, ReleasesHeldTextWhenItDoesNotMatch) {
  StopTextStream s({"STOP"});
  EXPECT_EQ(s.push("a ST"), "a ");
  EXPECT_EQ(s.push("AR"), "STAR");
  EXPECT_EQ(s.push("ST"), "");
  EXPECT_EQ(s.finish(), "ST");
  EXPECT_FALSE(s.stopped());
}

TEST(StopTextStream, NeverSplitsUtf8) {
  StopTextStream s;
  const std::string e = "\xc3\xa9";  // é
  EXPECT_EQ(s.push(e.substr(0, 1)), "");
  EXPECT_EQ(s.push(e.substr(1)), e);
  EXPECT_EQ(s.push("\xe2\x82"), "");  // first two bytes of €
  EXPECT_EQ(s.finish(), "\xe2\x82");  // end of stream: what is left, as is
}

TEST(StopTextStream, StopSpanningTokensAndEarliestMatchWins) {
  StopTextStream s({"cd", "bc"});
  std::string out = s.push("ab");
  out += s.push("cde");
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(out, "a");
}

}  // namespace g4
