import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 19, item 3: `/ready` for load balancers turns 503 the moment a stop begins, while the host
/// keeps serving for `drain_delay`; `/live` stays 200 until the master is gone.
@Suite(.serialized) struct ReadinessEndToEndTests {
    @Test func readyTurns503AtOnceWhenAStopBeginsAndServingGoesOnForTheDrainDelay() throws {
        guard let curl = Tool.path("curl") else { throw E2EError("curl is not installed") }
        let healthPort = try FreePort.pick()
        let ferry = try FerryInstance(name: "ready") { dir, port in
            FerryInstance.preamble(dir, port: port, workers: 1)
                + """
                [health]
                listen = "127.0.0.1:\(healthPort)"
                drain_delay = "1500ms"

                [[route]]
                path = "/"
                respond = 200
                body = "served\\n"
                """
        }
        defer { ferry.stop() }
        func code(_ url: String) throws -> String {
            try Tool.run(curl, ["-sk", "--max-time", "2", "-o", "/dev/null", "-w", "%{http_code}", url]).stdout
        }
        let ready = "http://127.0.0.1:\(healthPort)/ready"
        let deadline = Date().addingTimeInterval(10)
        while try code(ready) != "200" && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        #expect(try code(ready) == "200")
        #expect(try code("http://127.0.0.1:\(healthPort)/live") == "200")
        #expect(try code("http://127.0.0.1:\(healthPort)/other") == "404")
        let stopAt = Date()
        kill(ferry.process.processIdentifier, SIGTERM)
        var flipped: TimeInterval?
        while Date().timeIntervalSince(stopAt) < 1 {
            if try code(ready) == "503" {
                flipped = Date().timeIntervalSince(stopAt)
                break
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        print("readiness: 503 \(flipped.map { String(format: "%.3f", $0) } ?? "never") s after SIGTERM")
        #expect(flipped != nil)
        // Still serving during the drain delay, and still alive.
        #expect(try code("https://127.0.0.1:\(ferry.httpsPort)/") == "200")
        #expect(try code("http://127.0.0.1:\(healthPort)/live") == "200")
        #expect(Date().timeIntervalSince(stopAt) < 1.4, "checked within the drain delay")
        let gone = Date().addingTimeInterval(15)
        while ferry.process.isRunning && Date() < gone { Thread.sleep(forTimeInterval: 0.05) }
        #expect(!ferry.process.isRunning)
        #expect(Date().timeIntervalSince(stopAt) >= 1.5, "the stop waited for the drain delay")
    }
}
