import FerryConfig
import FerryProxy
import Foundation
import Testing

/// A drain (reload, stop) on busy keep-alive connections: the next response says
/// `Connection: close`, and a response whose head already promised keep-alive is not followed by a
/// close under the client's next request.
@Suite struct DrainTests {
    @Test func aDrainArrivingAfterAKeepAliveHeadAnswersTheNextRequestWithCloseInsteadOfResettingIt() async throws {
        try await withFramingBackendProxy { proxy in
            // /partial: the head and half the body at once, the rest 2 s later. The drain comes in
            // between, when the client has been told to keep the connection (2 s: a margin for a
            // busy machine, where the drain task may start late).
            let drained = Task {
                try await Task.sleep(for: .milliseconds(200))
                await proxy.server.drain(gracefulTimeout: .seconds(3))
            }
            let (received, closedByPeer) = try await offThePool {
                try rawConversation(
                    port: proxy.port, "GET /partial?seconds=2 HTTP/1.1\r\nHost: x\r\n\r\n", timeout: 3,
                    then: (after: "helloworld", send: "GET /length HTTP/1.1\r\nHost: x\r\n\r\n"))
            }
            _ = try await drained.value
            let responses = received.components(separatedBy: "HTTP/1.1 200 OK").dropFirst()
            #expect(responses.count == 2, "the next request is answered, not reset: \(received)")
            #expect(responses.first?.lowercased().contains("connection: close") == false)
            #expect(responses.last?.lowercased().contains("connection: close") == true, "\(received.debugDescription)")
            #expect(received.hasSuffix("hello"))
            #expect(closedByPeer)
        }
    }

    @Test func anIdleKeepAliveConnectionIsClosedByTheDrainAfterItsIdleGrace() async throws {
        try await withFramingBackendProxy { proxy in
            let started = Date()
            let drained = Task {
                try await Task.sleep(for: .milliseconds(100))
                await proxy.server.drain(gracefulTimeout: .seconds(3))
            }
            // One request, then silence: the drain closes the idle connection (after 500 ms idle),
            // well before the graceful timeout.
            let (received, closedByPeer) = try await offThePool {
                try rawConversation(port: proxy.port, "GET /length HTTP/1.1\r\nHost: x\r\n\r\n", timeout: 3)
            }
            _ = try await drained.value
            #expect(received.hasSuffix("hello"))
            #expect(closedByPeer)
            #expect(Date().timeIntervalSince(started) < 2.5)
        }
    }
}

/// Runs a blocking client off Swift's cooperative pool (two threads here), so that the tasks it
/// waits for (the drain) can run meanwhile.
func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}
