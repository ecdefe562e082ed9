import Foundation
import Testing

/// Malformed, odd and well-formed requests at a running Ferry (`scripts/fuzz_requests.py`, fixed
/// seeds, bounded): whatever comes in, the worker lives on, every connection is let go (none left
/// in CLOSE_WAIT, no tunnel left open), no answer is a 5xx, and Ferry still serves. With session
/// 4's code (6578e08) it fails: 71 connections and 3 tunnels left open after the run (a FIN with an
/// upgrade request, or after a pipelined request Ferry answered itself). The same fuzzer, run
/// longer by hand, found requests stuck at a backend until the 60 s response timeout (a pipelined
/// request with a malformed body, a WebSocket upgrade with a body), which show here as 5xx only
/// when the run outlasts that timeout.
///
/// In the serialized master suite: a long blocking test of its own suite would hold one of the
/// two cooperative threads of this 2-core machine for its whole run, and async tests elsewhere
/// (the WebSocket service's drain) then missed their timeouts.
extension MasterEndToEndTests {
    @Test func fuzzedRequestsLeaveTheWorkerServingAndNothingOpen() throws {
        guard let python = Tool.path("python3") else {
            print("skipped: python3 is missing")
            return
        }
        let master = self
        let ferry = try ServeEndToEndTests.startSeed(name: "fuzz", workers: 1)
        defer { ferry.stop() }
        let worker = try master.waitFor(ferry) { $0.workers.contains { $0.state == "ready" && $0.accepting == true } }
            .workers[0].pid
        var answered = 0
        for seed in [1, 2] {
            let result = try Tool.run(
                python,
                [
                    ServeEndToEndTests.scripts.appendingPathComponent("fuzz_requests.py").path,
                    String(ferry.httpsPort), "250", String(seed), "30",
                ])
            struct Summary: Decodable {
                var connections: Int
                var answers: [String: Int]
                var unanswered: Int
            }
            let line = result.stdout.split(separator: "\n").last.map(String.init) ?? ""
            let summary = try JSONDecoder().decode(Summary.self, from: Data(line.utf8))
            print("fuzz seed \(seed): \(line)")
            #expect(summary.connections > 100, "\(line)")
            answered += summary.answers.values.reduce(0, +)
        }
        #expect(answered > 150, "the fuzzed requests did not reach Ferry")
        // Every connection ends: the client closed, reset or half-closed each one.
        var stats: [String: Any] = [:]
        var workers: [[String: Any]] = []
        let deadline = Date().addingTimeInterval(10)
        repeat {
            Thread.sleep(forTimeInterval: 0.3)
            let json = try FerryBinary.run(["status", "--json", "--socket", ferry.controlSocket]).stdout
            let document = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] ?? [:]
            workers = document["workers"] as? [[String: Any]] ?? []
            stats = workers.first?["stats"] as? [String: Any] ?? [:]
        } while (stats["connectionsOpen"] as? Int ?? -1) != 0 && Date() < deadline
        #expect(workers.count == 1 && workers[0]["pid"] as? Int32 == worker, "the worker was replaced:\n\(ferry.log())")
        #expect(workers.first?["restarts"] as? Int == 0)
        #expect(stats["connectionsOpen"] as? Int == 0, "connections left open: \(stats)")
        #expect(stats["activeTunnels"] as? Int == 0, "tunnels left open: \(stats)")
        let routes = stats["routes"] as? [[String: Any]] ?? []
        let serverErrors = routes.map { (($0["responses"] as? [String: Int]) ?? [:])["5xx"] ?? 0 }.reduce(0, +)
        #expect(serverErrors == 0, "5xx answers: \(routes)")
        #expect(try master.get(ferry) == "200")
    }
}
