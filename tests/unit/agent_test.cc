// Agents in the library, without a server: request parsing (agent/request.h), the Gemma 3/4
// tool-call formats (prompt, constraint, output parser) and the thought channel in Sequence.
// Independent references: the jinja2-rendered Gemma 4 chats of tests/golden/chat_gemma4.json
// (scripts/gen_gemma4_chat_fixtures.py) hold tool calls as the official template writes them.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>

#include "agent/chat_format.h"
#include "agent/request.h"
#include "constrain/grammar.h"
#include "g4/engine.h"
#include "io/gguf.h"
#include "runtime/sequence.h"
#include "tokenizer/tokenizer.h"

namespace g4 {

namespace {

using njson = nlohmann::json;  // order-free comparison

const std::string kTokDir = std::string(G4_SOURCE_DIR) + "/tests/golden/gemma4_tok/";

ojson load_chat_cases() {
  std::ifstream in(std::string(G4_SOURCE_DIR) + "/tests/golden/chat_gemma4.json");
  return ojson::parse(in)["cases"];
}

ojson weather_tool() {
  return ojson::parse(R"({"type": "function", "function": {"name": "get_weather",
    "description": "Weather", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
    "required": ["city"]}}})");
}

AgentOptions weather_agent() {
  ojson body = {{"messages", {{{"role", "user"}, {"content", "hi"}}}},
                {"tools", ojson::array({weather_tool()})}};
  return parse_openai_chat(body).agent;
}

// Everything a parser reports, fed in pieces of the given sizes (cycled).
OutputDelta parse_in_pieces(ChatFormat fmt, const AgentOptions& a, const std::string& text,
                            std::vector<size_t> sizes) {
  auto p = make_output_parser(fmt, a, "call_");
  OutputDelta all;
  size_t at = 0, k = 0;
  while (at < text.size()) {
    const size_t n = std::min(sizes[k++ % sizes.size()], text.size() - at);
    append_delta(all, p->push(std::string_view(text).substr(at, n)));
    at += n;
  }
  append_delta(all, p->finish());
  return all;
}

std::string expect_error(const ojson& body, bool ollama = false) {
  try {
    ollama ? parse_ollama_chat(body) : parse_openai_chat(body);
  } catch (const RequestError& e) {
    return e.param + ": " + e.message;
  }
  ADD_FAILURE() << "accepted: " << body.dump();
  return "";
}

}  // namespace

TEST(AgentRequest, NormalizesOpenAiConversationWithToolCalls) {
  ojson body = ojson::parse(R"({"messages": [
    {"role": "developer", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "Weather "}, {"type": "text", "text": "in Paris?"}]},
    {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
      "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "15 C"}],
    "tools": [], "tool_choice": "auto", "parallel_tool_calls": false,
    "reasoning_effort": "low", "thinking_budget": 64})");
  body["tools"].push_back(weather_tool());
  const ChatRequest r = parse_openai_chat(body);
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[0]["role"], "system");
  EXPECT_EQ(r.messages[1]["content"], "Weather in Paris?");
  EXPECT_EQ(r.messages[2]["content"], "");
  EXPECT_EQ(njson(r.messages[2]["tool_calls"][0]["function"]["arguments"]),
            njson::parse(R"({"city": "Paris"})"));
  EXPECT_EQ(r.messages[3]["tool_call_id"], "c1");
  ASSERT_EQ(r.agent.tools.size(), 1u);
  EXPECT_EQ(r.agent.tools[0].name, "get_weather");
  EXPECT_FALSE(r.agent.parallel_tool_calls);
  EXPECT_TRUE(r.agent.thinking);
  EXPECT_EQ(r.agent.thinking_budget, 64);
}

TEST(AgentRequest, OllamaMessagesMatchResultsByName) {
  ojson body = ojson::parse(R"({"messages": [{"role": "user", "content": "x"},
    {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather",
      "arguments": {"city": "Oslo"}}}]},
    {"role": "tool", "tool_name": "get_weather", "content": "-3 C"}], "think": false})");
  const ChatRequest r = parse_ollama_chat(body);
  EXPECT_EQ(r.messages[1]["tool_calls"][0]["id"], "call_0");
  EXPECT_EQ(r.messages[2]["name"], "get_weather");
  EXPECT_FALSE(r.agent.thinking);
}

TEST(AgentRequest, BadRequestsNameTheProblem) {
  const ojson user = {{"role", "user"}, {"content", "x"}};
  struct Case {
    ojson body;
    std::string want;  // substring of "param: message"
    bool ollama = false;
  } cases[] = {
      {{{"messages", ojson::array({user})},
        {"tools", {{{"type", "function"}, {"function", {{"description", "d"}}}}}}},
       "tools[0].function.name is required"},
      {{{"messages", ojson::array({user})},
        {"tools", {{{"type", "function"}, {"function", {{"name", "a b"}}}}}}},
       "letters, digits"},
      {{{"messages", ojson::array({user})}, {"tools", {weather_tool(), weather_tool()}}},
       "declared twice"},
      {{{"messages", ojson::array({user})},
        {"tools",
         {{{"type", "function"},
           {"function", {{"name", "f"}, {"parameters", {{"type", "array"}}}}}}}}},
       "must describe an object"},
      {{{"messages", ojson::array({user})}, {"tool_choice", "required"}},
       "no 'tools' are declared"},
      {{{"messages", ojson::array({user})},
        {"tools", ojson::array({weather_tool()})},
        {"tool_choice", {{"type", "function"}, {"function", {{"name", "nope"}}}}}},
       "'nope', which is not among the declared tools"},
      {{{"messages", ojson::array({user})}, {"tool_choice", "sometimes"}},
       "tool_choice: 'tool_choice' must be"},
      {{{"messages", {user, {{"role", "tool"}, {"tool_call_id", "zz"}, {"content", "r"}}}}},
       "messages[1].tool_call_id: messages[1].tool_call_id 'zz' does not answer"},
      {{{"messages", {user, {{"role", "tool"}, {"content", "r"}}}}}, "tool_call_id is required"},
      {{{"messages", {user, {{"role", "tool"}, {"content", "r"}}}}}, "no earlier assistant", true},
      {{{"messages",
         {user,
          {{"role", "assistant"},
           {"tool_calls",
            {{{"id", "a"}, {"function", {{"name", "f"}, {"arguments", "{not json"}}}}}}}}}},
       "arguments must be a JSON object"},
      {{{"messages", ojson::array({user})}, {"functions", ojson::array()}}, "deprecated"},
      {{{"messages", ojson::array({user})}, {"reasoning_effort", "max"}}, "reasoning_effort"},
      {{{"messages", ojson::array({user})}, {"thinking_budget", -1}}, "thinking_budget"},
      {{{"messages", ojson::array({user})}, {"chat_template_kwargs", {{"foo", 1}}}},
       "chat_template_kwargs.foo"},
      {{{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}}}}, "text only"},
      {{{"messages", ojson::array()}}, "must not be empty"},
      {{{"messages", ojson::array({user})}, {"think", "maybe"}}, "'think' must be", true},
  };
  for (const auto& c : cases) {
    const std::string e = expect_error(c.body, c.ollama);
    EXPECT_NE(e.find(c.want), std::string::npos) << "want '" << c.want << "' in '" << e << "'";
  }
}

TEST(AgentFormat, Gemma4ArgumentsParseAsTheTemplateWritesThem) {
  // Every tool call in the jinja2-rendered chats parses back to the arguments it was made from.
  int n = 0;
  for (const ojson& c : load_chat_cases()) {
    const std::string text = c["text"];
    size_t at = 0;
    std::vector<ojson> want;
    for (const ojson& m : c["messages"])
      if (m.contains("tool_calls"))
        for (const ojson& tc : m["tool_calls"])
          if (tc["function"]["arguments"].is_object()) want.push_back(tc["function"]);
    size_t k = 0;
    while ((at = text.find("<|tool_call>call:", at)) != std::string::npos && k < want.size()) {
      const size_t b = text.find('{', at), e = text.find("<tool_call|>", at);
      ASSERT_NE(e, std::string::npos);
      EXPECT_EQ(text.substr(at + 17, b - at - 17), want[k]["name"]);
      auto args = parse_gemma4_arguments(std::string_view(text).substr(b, e - b));
      ASSERT_TRUE(args.ok()) << args.error() << " in " << c["name"];
      EXPECT_EQ(njson(args.value()), njson(want[k]["arguments"])) << c["name"];
      at = e;
      ++k;
      ++n;
    }
  }
  EXPECT_GE(n, 5);
  EXPECT_FALSE(parse_gemma4_arguments("{a:<|\"|>open}").ok());
  EXPECT_FALSE(parse_gemma4_arguments("{a:1} tail").ok());
  EXPECT_FALSE(parse_gemma4_arguments(std::string(300, '[')).ok());
  // Whitespace the grammar lets through around keys is not part of them.
  auto w = parse_gemma4_arguments("{\ncity\n:<|\"|>P<|\"|>\r,\tdays\t:2}");
  ASSERT_TRUE(w.ok()) << w.error();
  EXPECT_EQ(njson(w.value()), njson::parse(R"({"city": "P", "days": 2})"));
  auto v = parse_gemma4_arguments("{\"q k\":[1,-2.5e3,true,null,<|\"|>x, y{}<|\"|>],b:{}}");
  ASSERT_TRUE(v.ok()) << v.error();
  EXPECT_EQ(njson(v.value()),
            njson::parse(R"({"q k": [1, -2500.0, true, null, "x, y{}"], "b": {}})"));
}

TEST(AgentFormat, Gemma4ParserEdgeCasesUsersReported) {
  const AgentOptions a = weather_agent();
  const std::string call1 =
      "<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>,days:2}<tool_call|>";
  const std::string call2 = "<|tool_call>call:get_weather{city:<|\"|>Oslo<|\"|>}<tool_call|>";
  struct Case {
    std::string name, text, reasoning, content;
    std::vector<std::string> cities;
  } cases[] = {
      {"plain answer", "Hello there.", "", "Hello there.", {}},
      {"thinking then answer",
       "<|channel>thought\nSky: Rayleigh.<channel|>Blue light scatters.",
       "Sky: Rayleigh.",
       "Blue light scatters.",
       {}},
      {"several calls in a row", call1 + call2, "", "", {"Paris", "Oslo"}},
      {"empty thought block then call", "<|channel>thought\n<channel|>" + call1, "", "", {"Paris"}},
      {"stray channel close", "<channel|>Answer.", "", "Answer.", {}},
      {"two thought blocks",
       "<|channel>thought\nA<channel|><|channel>thought\nB<channel|>Done",
       "AB",
       "Done",
       {}},
      {"call inside thinking",
       "<|channel>thought\nI will call. " + call1 + "<channel|>",
       "I will call. ",
       "",
       {"Paris"}},
      {"text then call", "Let me check.\n" + call1, "", "Let me check.", {"Paris"}},
      {"unknown tool stays text",
       "<|tool_call>call:nope{}<tool_call|>",
       "",
       "<|tool_call>call:nope{}<tool_call|>",
       {}},
      {"unfinished call is text",
       "<|tool_call>call:get_weather{city:",
       "",
       "<|tool_call>call:get_weather{city:",
       {}},
      {"unclosed thought", "<|channel>thought\nstill thinking", "still thinking", "", {}},
      {"marker-like text", "a <|chan b", "", "a <|chan b", {}},
  };
  for (const auto& c : cases) {
    for (std::vector<size_t> sizes : {std::vector<size_t>{1 << 20}, {1}, {2, 3}, {7, 1, 5}}) {
      const OutputDelta d = parse_in_pieces(ChatFormat::kGemma4, a, c.text, sizes);
      EXPECT_EQ(d.reasoning, c.reasoning) << c.name;
      EXPECT_EQ(d.content, c.content) << c.name;
      ASSERT_EQ(d.calls.size(), c.cities.size()) << c.name;
      for (size_t i = 0; i < d.calls.size(); ++i) {
        EXPECT_EQ(d.calls[i].name, "get_weather");
        EXPECT_EQ(d.calls[i].arguments["city"], c.cities[i]) << c.name;
        EXPECT_EQ(d.calls[i].id, "call_" + std::to_string(i));
      }
    }
  }
}

TEST(AgentFormat, Gemma3JsonConventionRoundTrips) {
  const AgentOptions a = weather_agent();
  const std::string text =
      "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"days\": 2}}\n"
      "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"a}\\\"b\"}}";
  for (std::vector<size_t> sizes : {std::vector<size_t>{1 << 20}, {1}, {3, 2}}) {
    const OutputDelta d = parse_in_pieces(ChatFormat::kGemma3, a, text, sizes);
    EXPECT_EQ(d.content, "");
    ASSERT_EQ(d.calls.size(), 2u);
    EXPECT_EQ(d.calls[1].arguments["city"], "a}\"b");
  }
  EXPECT_EQ(parse_in_pieces(ChatFormat::kGemma3, a, "Just text {\"x\": 1}", {4}).content,
            "Just text {\"x\": 1}");
  // The history renders calls and results in the same convention.
  ojson body = ojson::parse(R"({"messages": [{"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function",
      "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "15 C"}]})");
  body["tools"] = ojson::array({weather_tool()});
  auto text2 = render_agent_chat(ChatFormat::kGemma3, parse_openai_chat(body));
  ASSERT_TRUE(text2.ok()) << text2.error();
  const std::string& s = text2.value();
  EXPECT_NE(s.find("Be brief.\n\nYou can call functions."), std::string::npos) << s;
  EXPECT_NE(s.find("<start_of_turn>model\n{\"name\": \"get_weather\", \"parameters\": {\"city\": "
                   "\"Paris\"}}<end_of_turn>"),
            std::string::npos)
      << s;
  EXPECT_NE(
      s.find("<start_of_turn>user\n```tool_output\n15 C\n```<end_of_turn>\n<start_of_turn>model\n"),
      std::string::npos)
      << s;
}

namespace {

struct G4Tok {
  std::unique_ptr<GgufFile> file;
  Tokenizer tok;
};

G4Tok gemma4_tok() {
  auto f = GgufFile::open(kTokDir + "tokenizer.gguf");
  EXPECT_TRUE(f.ok());
  auto t = Tokenizer::from_gguf(*f.value());
  EXPECT_TRUE(t.ok());
  return {std::move(f).value(), std::move(t).value()};
}

// Whether the mask lets every token of `text` through, in order, and then end of turn.
bool mask_accepts(const std::shared_ptr<const CompiledConstraint>& c, const Tokenizer& tok,
                  const std::string& text, int32_t end) {
  auto m = make_constraint_mask(c, tok.size());
  std::vector<int32_t> ids = tok.encode(text, false, false);
  ids.push_back(end);
  std::vector<float> row(size_t(tok.size()));
  for (int32_t id : ids) {
    std::fill(row.begin(), row.end(), 0.0f);
    m->apply(row.data(), tok.size());
    if (!std::isfinite(row[size_t(id)])) return false;
    m->accept(id);
  }
  return true;
}

}  // namespace

TEST(AgentFormat, Gemma4CallConstraintAdmitsExactlyValidCalls) {
  G4Tok g = gemma4_tok();
  ConstraintCompiler cc(g.tok, g.tok.size());
  AgentOptions a = weather_agent();
  const int32_t resp = g.tok.find("<|tool_response>"), eot = g.tok.find("<turn|>");
  ASSERT_GE(resp, 0);
  for (ToolChoice choice : {ToolChoice::kAuto, ToolChoice::kRequired}) {
    a.tool_choice = choice;
    auto spec = agent_constraint(ChatFormat::kGemma4, a, std::nullopt);
    ASSERT_TRUE(spec.ok()) << spec.error();
    ASSERT_TRUE(spec.value().has_value());
    auto c = cc.compile(*spec.value());
    ASSERT_TRUE(c.ok()) << c.error();
    const std::string good =
        "<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>,days:2}<tool_call|>";
    EXPECT_TRUE(mask_accepts(c.value(), g.tok, good, resp));
    EXPECT_TRUE(mask_accepts(c.value(), g.tok, good + good, resp));
    EXPECT_FALSE(mask_accepts(c.value(), g.tok,
                              "<|tool_call>call:get_wetter{city:<|\"|>P<|\"|>}<tool_call|>", resp));
    EXPECT_FALSE(
        mask_accepts(c.value(), g.tok, "<|tool_call>call:get_weather{days:2}<tool_call|>", resp));
    EXPECT_FALSE(mask_accepts(c.value(), g.tok,
                              "<|tool_call>call:get_weather{city:<|\"|>P<|\"|>,days:9}<tool_call|>",
                              resp));
    // Text instead of a call: fine when the model may choose, not when a call is required.
    EXPECT_EQ(mask_accepts(c.value(), g.tok, "It is sunny.", eot), choice == ToolChoice::kAuto);
  }
  a.tool_choice = ToolChoice::kAuto;
  a.parallel_tool_calls = false;
  auto one = cc.compile(*agent_constraint(ChatFormat::kGemma4, a, std::nullopt).value());
  ASSERT_TRUE(one.ok());
  const std::string call = "<|tool_call>call:get_weather{city:<|\"|>Oslo<|\"|>}<tool_call|>";
  EXPECT_TRUE(mask_accepts(one.value(), g.tok, call, resp));
  EXPECT_FALSE(mask_accepts(one.value(), g.tok, call + call, resp));
}

TEST(AgentFormat, UnboundedNumbersCannotRunOn) {
  // A tool argument {"type": "integer"} once let a small model write digits until max_tokens;
  // unbounded integers and numbers are now |x| <= 999999999999999.
  G4Tok g = gemma4_tok();
  ConstraintCompiler cc(g.tok, g.tok.size());
  const int32_t eot = g.tok.find("<turn|>");
  auto ci = cc.compile({ConstraintSpec::Kind::kJsonSchema, R"({"type": "integer"})", {}});
  auto cn = cc.compile({ConstraintSpec::Kind::kJsonSchema, R"({"type": "number"})", {}});
  ASSERT_TRUE(ci.ok() && cn.ok());
  for (const char* v : {"0", "7", "-45", "999999999999999", "-999999999999999"})
    EXPECT_TRUE(mask_accepts(ci.value(), g.tok, v, eot)) << v;
  for (const char* v : {"1000000000000000", "01", "1.5"})
    EXPECT_FALSE(mask_accepts(ci.value(), g.tok, v, eot)) << v;
  for (const char* v : {"0", "3.25", "-0.5", "123456"})
    EXPECT_TRUE(mask_accepts(cn.value(), g.tok, v, eot)) << v;
  EXPECT_FALSE(mask_accepts(cn.value(), g.tok, "10000000000000000", eot));
}

TEST(AgentFormat, ToolSchemasAreCheckedLikeResponseFormats) {
  AgentOptions a = weather_agent();
  a.tools[0].parameters = ojson::parse(R"({"type": "object", "properties": {"x": {"not": {}}}})");
  auto s = agent_constraint(ChatFormat::kGemma4, a, std::nullopt);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().find("tools[0].function.parameters"), std::string::npos) << s.error();
  EXPECT_NE(s.error().find("'not'"), std::string::npos) << s.error();
  a = weather_agent();
  auto r = agent_constraint(ChatFormat::kGemma3, a,
                            ConstraintSpec{ConstraintSpec::Kind::kRegex, "a+", {}});
  EXPECT_FALSE(r.ok());
}

TEST(AgentSequence, ThoughtChannelPrecedesConstraintAndBudgetClosesIt) {
  G4Tok g = gemma4_tok();
  ConstraintCompiler cc(g.tok, g.tok.size());
  auto c = cc.compile({ConstraintSpec::Kind::kChoice, "", {"yes", "no"}});
  ASSERT_TRUE(c.ok());
  const int32_t open = g.tok.find("<|channel>"), close = g.tok.find("<channel|>");
  GenerateOptions o;
  o.sampling.temperature = 0;
  o.constraint = c.value();
  o.thought_open = open;
  o.thought_close = close;
  o.thinking_budget = 3;
  o.show_control = true;
  o.max_tokens = 50;
  Sequence seq(g.tok, g.tok.size(), o);
  const int32_t favourite = g.tok.encode("maybe", false, false)[0];
  std::vector<float> row(size_t(g.tok.size()));
  std::string text;
  for (int step = 0; step < 20; ++step) {
    std::fill(row.begin(), row.end(), 0.0f);
    row[size_t(favourite)] = 5;             // the model would rather say "maybe"
    if (step == 0) row[size_t(open)] = 10;  // and opens the thought channel first
    const TokenOutcome t = seq.next(row.data(), step, 1000);
    text += t.text;
    if (!t.finish.empty()) break;
  }
  text += seq.flush();
  // Three free tokens inside the channel, the close forced, then the constraint.
  const std::string m = g.tok.piece(favourite);
  const std::string head = "<|channel>" + m + m + m + "<channel|>";
  ASSERT_EQ(text.substr(0, head.size()), head) << text;
  const std::string answer = text.substr(head.size());
  EXPECT_TRUE(answer == "yes" || answer == "no") << text;
}

}  // namespace g4
