import Foundation
import Testing

/// The Pebble harness itself: the ACME directory over HTTPS with the harness's certificate, the
/// run's issuing root from the management interface, and challtestsrv resolving any name to
/// 127.0.0.1.
@Suite struct PebbleHarnessTests {
    @Test func pebbleServesItsDirectory() throws {
        guard Tool.path("pebble") != nil else {
            print("skipped: pebble is not installed (scripts/install-deps.sh test)")
            return
        }
        guard let curl = Tool.path("curl") else { throw E2EError("curl is not installed") }
        guard let python = Tool.path("python3") else { throw E2EError("python3 is not installed") }
        let pebble = try PebbleHarness(httpPort: try FreePort.pick(), tlsPort: try FreePort.pick())
        defer { pebble.stop() }

        let directory = try Tool.run(
            curl, ["-sS", "--max-time", "10", "--cacert", pebble.apiCertificatePath, pebble.directoryURL], timeout: 15)
        #expect(directory.status == 0, "\(directory.stderr)\n\(pebble.log)")
        #expect(directory.stdout.contains("\"newOrder\"") && directory.stdout.contains("\"newNonce\""))
        #expect(try pebble.issuingRootPEM().contains("BEGIN CERTIFICATE"))

        // A raw DNS A query for a.ferry.test; prints the answers' addresses.
        let query = """
            import socket, struct, sys
            name = b"".join(bytes([len(p)]) + p for p in b"a.ferry.test".split(b".")) + b"\\0"
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(5)
            s.sendto(struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1),
                     ("127.0.0.1", int(sys.argv[1])))
            reply = s.recv(512)
            count, at = struct.unpack(">H", reply[6:8])[0], 12 + len(name) + 4
            for _ in range(count):
                at += 2 if reply[at] & 0xC0 == 0xC0 else len(name)
                kind, _, _, length = struct.unpack(">HHIH", reply[at:at + 10])
                if kind == 1: print(socket.inet_ntoa(reply[at + 10:at + 10 + length]))
                at += 10 + length
            """
        let answer = try Tool.run(python, ["-c", query, "\(pebble.dnsPort)"], timeout: 15)
        #expect(answer.status == 0, "\(answer.stderr)")
        #expect(answer.stdout.split(separator: "\n").contains("127.0.0.1"), "\(answer.stdout)\n\(pebble.log)")
    }
}
