import FerryConfig
import FerryProxy
import Foundation
import NIOConcurrencyHelpers
import Testing

/// A drain (reload, stop) on busy keep-alive connections: the next response says
/// `Connection: close`, and a response whose head already promised keep-alive is not followed by a
/// close under the client's next request. Ordered by events, not by sleeps: the suite's other
/// tests may hold Swift's two cooperative threads for seconds.
@Suite struct DrainTests {
    @Test func aDrainArrivingAfterAKeepAliveHeadAnswersTheNextRequestWithCloseInsteadOfResettingIt() async throws {
        try await withFramingBackendProxy { proxy in
            let release = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-drain-\(UUID())").path
            defer { unlink(release) }
            // /partial?until=: the head and half the body at once, the rest once `release` exists.
            // The drain comes in between, when the client has been told to keep the connection.
            let client = BlockingClient(port: proxy.port)
            let conversation = Task {
                try await offThePool {
                    try client.converse(
                        "GET /partial?until=\(release) HTTP/1.1\r\nHost: x\r\n\r\n", marks: ["hello"],
                        then: (after: "helloworld", send: "GET /length HTTP/1.1\r\nHost: x\r\n\r\n"))
                }
            }
            try await client.waitFor(mark: "hello")
            let drained = Task { await proxy.server.drain(gracefulTimeout: .seconds(20)) }
            while !proxy.server.isDraining { try await Task.sleep(for: .milliseconds(10)) }
            FileManager.default.createFile(atPath: release, contents: nil)
            let (received, closedByPeer) = try await conversation.value
            await drained.value
            let responses = received.components(separatedBy: "HTTP/1.1 200 OK").dropFirst()
            #expect(responses.count == 2, "the next request is answered, not reset: \(received)")
            #expect(responses.first?.lowercased().contains("connection: close") == false)
            #expect(responses.last?.lowercased().contains("connection: close") == true)
            #expect(received.hasSuffix("hello"))
            #expect(closedByPeer)
        }
    }

    @Test func anIdleKeepAliveConnectionIsClosedByTheDrainLongBeforeItsGracefulTimeout() async throws {
        try await withFramingBackendProxy { proxy in
            let client = BlockingClient(port: proxy.port)
            // The client's own timeout is long: under a full parallel run the drain may wait its
            // turn on Swift's two cooperative threads for many seconds. What is measured is the
            // time from the drain's start to the close, both taken off the pool's schedule.
            let conversation = Task {
                try await offThePool {
                    let result = try client.converse(
                        "GET /length HTTP/1.1\r\nHost: x\r\n\r\n", marks: ["hello"], timeout: 120)
                    return (result, ContinuousClock.now)
                }
            }
            try await client.waitFor(mark: "hello")
            // One request, then silence: the drain closes the idle connection (after 500 ms idle);
            // the graceful timeout (30 s) is not what closes it.
            let drainStarted = NIOLockedValueBox<ContinuousClock.Instant?>(nil)
            let drained = Task {
                drainStarted.withLockedValue { $0 = .now }
                await proxy.server.drain(gracefulTimeout: .seconds(30))
            }
            let ((received, closedByPeer), closedAt) = try await conversation.value
            await drained.value
            #expect(received.hasSuffix("hello"))
            #expect(closedByPeer, "closed by the drain, not by the client's timeout")
            let started = try #require(drainStarted.withLockedValue { $0 })
            #expect(closedAt - started < .seconds(20), "closed \(closedAt - started) after the drain began")
        }
    }
}

/// `rawConversation` on a thread of its own, telling the test when what it received contains each
/// of `marks`.
final class BlockingClient: @unchecked Sendable {
    let port: Int
    private let seen = NIOLockedValueBox<Set<String>>([])

    init(port: Int) { self.port = port }

    func converse(
        _ request: String, marks: [String], timeout: Double = 60, then followUp: (after: String, send: String)? = nil
    ) throws -> (received: String, closedByPeer: Bool) {
        try rawConversation(
            port: port, request, timeout: timeout, then: followUp,
            onReceive: { text in
                for mark in marks where text.contains(mark) { self.seen.withLockedValue { _ = $0.insert(mark) } }
            })
    }

    func waitFor(mark: String, timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !seen.withLockedValue({ $0.contains(mark) }) {
            guard ContinuousClock.now < deadline else { throw TestFailure("never received \(mark)") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// Runs a blocking client off Swift's cooperative pool (two threads here), so that the tasks it
/// waits for (the drain) can run meanwhile.
func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}
