import Foundation
import Logging
import NIOCore
import NIOPosix
import Testing

@testable import FerryBackends

/// The built-in backends alone (no proxy), driven by real peers: curl and Python `websockets`.
@Suite(.serialized) struct BackendPeerTests {
    static let curl = ["/usr/bin/curl", "/usr/local/bin/curl"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test func staticServerSpeaksHTTPCachingAndRangesToCurl() async throws {
        guard let curl = Self.curl else {
            print("skipped: curl is not installed")
            return
        }
        let root = try StaticRoot()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let service = try StaticFileService(
            options: .init(root: root.root, cacheControl: "max-age=60"), logger: Logger(label: "t"))
        let channel = try await service.start(address: .inet(host: "127.0.0.1", port: 0), group: group)
        let base = "http://127.0.0.1:\(channel.localAddress!.port!)"
        let full = try run(curl, ["-s", "-i", "\(base)/digits.txt"]).output
        #expect(full.hasPrefix("HTTP/1.1 200"))
        #expect(full.contains("Content-Type: text/plain"))
        #expect(full.contains("Cache-Control: max-age=60"))
        #expect(full.hasSuffix("0123456789"))
        let etag = try #require(full.split(separator: "\r\n").first { $0.hasPrefix("ETag: ") }?.dropFirst(6))
        let lastModified = try #require(
            full.split(separator: "\r\n").first { $0.hasPrefix("Last-Modified: ") }?.dropFirst(15))
        #expect(
            try run(
                curl,
                ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "If-None-Match: \(etag)", "\(base)/digits.txt"]
            ).output == "304")
        #expect(
            try run(
                curl,
                [
                    "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "If-Modified-Since: \(lastModified)",
                    "\(base)/digits.txt",
                ]
            )
            .output == "304")
        let range = try run(curl, ["-s", "-i", "-H", "Range: bytes=2-4", "\(base)/digits.txt"]).output
        #expect(range.hasPrefix("HTTP/1.1 206"))
        #expect(range.contains("Content-Range: bytes 2-4/10"))
        #expect(range.hasSuffix("234"))
        #expect(
            try run(
                curl, ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Range: bytes=50-", "\(base)/digits.txt"]
            ).output == "416")
        let head = try run(curl, ["-s", "-I", "\(base)/tts/wav/a.wav"]).output
        #expect(head.contains("Content-Type: audio/wav"))
        #expect(head.contains("Content-Length: 12"))
        // Hostile paths over the wire, as curl sends them (--path-as-is keeps the dots).
        for path in ["/../secret.txt", "/%2e%2e/secret.txt", "/escape", "/.env", "/tts/../../secret.txt"] {
            let result = try run(curl, ["-s", "--path-as-is", "-w", "\n%{http_code}", "\(base)\(path)"]).output
            #expect(!result.contains("TOP SECRET"), "\(path)")
            #expect(result.hasSuffix("404") || result.hasSuffix("400"), "\(path): \(result)")
        }
        try await channel.close()
        try await group.shutdownGracefully()
    }

    @Test func webSocketServiceProtocolBehaviour() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/env"),
            (try? run("/usr/bin/env", ["python3", "-c", "import websockets"]).status) == 0
        else {
            print("skipped: python3 with websockets is not installed")
            return
        }
        let results = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-tts-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: results) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let service = try WebSocketTTSService(
            options: .init(resultsDirectory: results.path, maxMessageBytes: 4096, messagesPerSecond: 50),
            logger: Logger(label: "t"))
        let channel = try await service.start(address: .inet(host: "127.0.0.1", port: 0), group: group)
        let port = channel.localAddress!.port!
        let script = """
            import asyncio, hashlib, json, os, sys, websockets
            async def main():
                url = "ws://127.0.0.1:\(port)/tts"
                async with websockets.connect(url) as ws:
                    await ws.send(json.dumps({"id": "a", "text": "hello ferry", "format": "wav"}))
                    reply = json.loads(await ws.recv())
                    path = os.path.join(sys.argv[1], reply["url"][len("tts/"):])
                    data = open(path, "rb").read()
                    assert reply["id"] == "a" and reply["bytes"] == len(data), reply
                    assert hashlib.sha256(data).hexdigest() == reply["sha256"], reply
                    await ws.send("{not json")
                    bad = json.loads(await ws.recv())
                    assert "error" in bad, bad
                    await ws.send(json.dumps({"id": "b", "text": "x", "format": "ogg"}))
                    assert "error" in json.loads(await ws.recv())
                    pong = await ws.ping()
                    await asyncio.wait_for(pong, 5)
                try:
                    async with websockets.connect(url, max_size=None) as ws:
                        await ws.send("x" * 10000)
                        await ws.recv()
                    print("no close for a large message")
                    return
                except websockets.exceptions.ConnectionClosed as closed:
                    assert closed.rcvd.code == 1009, closed
                async with websockets.connect(url) as ws:
                    await ws.close(code=1000)
                    assert ws.close_code == 1000
                print("ok")
            asyncio.run(main())
            """
        let result = try run("/usr/bin/env", ["python3", "-c", script, results.path])
        #expect(result.output.contains("ok"), "\(result.output)")
        // Drain: an open WebSocket gets 1001 (going away).
        let drainScript = """
            import asyncio, websockets, sys
            async def main():
                async with websockets.connect("ws://127.0.0.1:\(port)/tts") as ws:
                    print("open", flush=True)
                    try:
                        # Long: under a full parallel run the drain below may wait its turn on
                        # Swift's two cooperative threads for many seconds; it ends the wait.
                        await asyncio.wait_for(ws.recv(), 90)
                    except websockets.exceptions.ConnectionClosed as closed:
                        print("closed", closed.rcvd.code)
            asyncio.run(main())
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", drainScript]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        var seen = Data()
        while !String(decoding: seen, as: UTF8.self).contains("open") {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            seen.append(chunk)
        }
        try await channel.close()
        await service.drain(timeout: .seconds(3))
        seen.append(pipe.fileHandleForReading.readDataToEndOfFile())
        process.waitUntilExit()
        #expect(String(decoding: seen, as: UTF8.self).contains("closed 1001"))
        try await group.shutdownGracefully()
    }
}
