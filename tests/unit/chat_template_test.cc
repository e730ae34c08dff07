// Gemma 3 chat rendering. The expected strings follow the HF chat_template shipped in
// ../shared/testdata/gemma3/tokenizer_config.json (tests/golden/chat_gemma3.json holds
// jinja2 renderings of it; see scripts/gen_chat_fixtures.py).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tokenizer/chat_template.h"

namespace g4 {

TEST(ChatTemplate, SystemFoldsIntoFirstUserTurn) {
  auto r = render_gemma3({{"system", "Be brief."}, {"user", " Hi "}}, true);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(),
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n");
}

static std::vector<ChatMessage> messages(const nlohmann::json& j) {
  std::vector<ChatMessage> m;
  for (const auto& x : j) m.push_back({x["role"], x["content"]});
  return m;
}

TEST(ChatTemplate, MatchesOfficialJinjaRenderings) {
  std::ifstream in(std::string(G4_SOURCE_DIR) + "/tests/golden/chat_gemma3.json");
  ASSERT_TRUE(in.good());
  const auto fx = nlohmann::json::parse(in);
  for (const auto& c : fx["cases"]) {
    auto r = render_gemma3(messages(c["messages"]), c["add_generation_prompt"]);
    ASSERT_TRUE(r.ok()) << c["name"] << ": " << r.error();
    EXPECT_EQ(r.value(), c["text"].get<std::string>()) << c["name"];
  }
  for (const auto& c : fx["rejected"]) {
    EXPECT_FALSE(render_gemma3(messages(c["messages"]), true).ok()) << c["name"];
  }
}

TEST(ChatTemplate, RejectsBadConversations) {
  EXPECT_FALSE(render_gemma3({}, true).ok());
  EXPECT_FALSE(render_gemma3({{"assistant", "x"}}, true).ok());
  EXPECT_FALSE(render_gemma3({{"user", "a"}, {"user", "b"}}, true).ok());
  EXPECT_FALSE(render_gemma3({{"user", "a"}, {"tool", "b"}}, true).ok());
  EXPECT_FALSE(render_gemma3({{"user", "a"}, {"system", "b"}}, true).ok());
}

}  // namespace g4
