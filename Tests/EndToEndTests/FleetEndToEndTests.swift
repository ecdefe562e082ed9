import Foundation
import Testing

/// Issue 19, item 5: three Ferry hosts behind HAProxy (TCP mode, send-proxy-v2, health checks on
/// /ready) in network namespaces this test makes, a backend and a client in namespaces of their
/// own. `scripts/fleet.py` builds the fleet, runs the scenarios and reports what it measured; the
/// assertions are here.
@Suite(.serialized) struct FleetEndToEndTests {
    static let script = ServeEndToEndTests.scripts.appendingPathComponent("fleet.py").path

    /// Network namespaces need CAP_SYS_ADMIN (root, or a container that allows them).
    static var namespacesPermitted: Bool {
        guard let python = Tool.path("python3") else { return false }
        return (try? Tool.run(python, [script, "--can-run"]).status) == 0
    }

    @Test(
        .enabled(
            if: namespacesPermitted,
            "skipped: network namespaces cannot be made here (`ip netns add` failed: needs root or CAP_SYS_ADMIN)")
    )
    func threeHostsBehindALayer4BalancerRollingRestartHostKillResumptionAndProxyHeaders() throws {
        guard Tool.path("haproxy") != nil, Tool.path("openssl") != nil, Tool.path("curl") != nil else {
            throw E2EError("haproxy, openssl and curl are needed (scripts/install-deps.sh test)")
        }
        let work = FileManager.default.temporaryDirectory.appendingPathComponent(
            "ferry-fleet-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: work) }
        let output = try Tool.run(
            Tool.path("python3")!, [Self.script, FerryBinary.url.path, work.path], timeout: 360)
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any],
            "fleet.py printed no report: \(output.stdout)\(output.stderr)")
        #expect(report["error"] == nil, "\(report["error"] ?? "")\n\(output.stdout)")

        // The backend sees the client's own address (10.77.0.10) through the balancer's PROXY v2,
        // over every host.
        let answers = report["client_address"] as? [[String: String]] ?? []
        #expect(answers.count == 6 && answers.allSatisfy { $0["xff"] == "10.77.0.10" }, "\(answers)")
        #expect(answers.allSatisfy { $0["forwarded"]?.hasPrefix("for=10.77.0.10;") == true }, "\(answers)")
        #expect(Set(answers.compactMap { $0["peer"] }).count == 3, "all three hosts served: \(answers)")

        let refusals = report["refusals"] as? [String: String] ?? [:]
        #expect(refusals["forged_header_from_client"] == "refused", "a PROXY header from outside proxy_protocol_from")
        #expect(refusals["plain_from_balancer"] == "refused", "a plain connection where the header is required")
        #expect(refusals["plain_from_client"] == "accepted")
        #expect(refusals["header_from_balancer"] == "accepted")

        let resumption = report["resumption"] as? [String: String] ?? [:]
        #expect(resumption["h1_to_h2_shared_keys"] == "Reused")
        #expect(resumption["h2_to_h3_shared_keys"] == "Reused")
        #expect(resumption["h1_to_h3_own_keys"] == "New")

        // Rolling restart under steady keep-alive load: not one request lost.
        let rolling = report["rolling_restart"] as? [String: Any] ?? [:]
        let rollingOK = rolling["ok"] as? Int ?? 0
        #expect(rolling["failed"] as? Int == 0, "\(rolling["failures"] ?? "")")
        #expect(rollingOK > 100)
        #expect((rolling["by_host"] as? [String: Int])?.count == 3)
        #expect((rolling["steps"] as? [Any])?.count == 3)

        // kill -9 of one host: at most the requests in flight on its connections (8 client threads).
        let killed = report["host_kill"] as? [String: Any] ?? [:]
        let killFailures = killed["failed"] as? Int ?? -1
        #expect((0...8).contains(killFailures), "\(killed["failures"] ?? "")")
        #expect(killed["ok"] as? Int ?? 0 > 100)

        let battery = report["proxy_battery"] as? [String: Any] ?? [:]
        let named = battery["named"] as? [String: [String: String]] ?? [:]
        #expect(named.count == 16)
        for (name, outcome) in named { #expect(outcome["got"] == outcome["expected"], "\(name)") }
        let mutations = battery["mutations"] as? [String: Int] ?? [:]
        #expect((mutations["accepted"] ?? 0) + (mutations["refused"] ?? 0) == 150)
        #expect(battery["served_after"] as? String == "accepted")
        #expect(battery["same_worker"] as? Bool == true, "the worker survived the battery")

        print(
            "fleet: rolling restart \(rollingOK) ok / \(rolling["failed"] ?? "?") failed, steps \(rolling["steps"] ?? "");"
                + " kill -9 of h2: \(killFailures) failed of \(killed["ok"] ?? "?") ok, marked down after"
                + " \(killed["marked_down_s"] ?? "?") s; resumption \(resumption); mutations \(mutations)")
    }
}
