import FerryConfig
import FerryTLS
import Foundation
import Testing

@testable import FerrySupervisor

@Suite struct CertificateWatchTests {
    @Test func aChangeIsAppliedOnceSettledAndAMismatchedPairIsRefusedOnce() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-cw-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func pair(_ name: String) throws -> (String, String) {
            let paths = (
                directory.appendingPathComponent("\(name).crt").path,
                directory.appendingPathComponent("\(name).key").path
            )
            _ = try SelfSignedCertificate.ensure(certificatePath: paths.0, keyPath: paths.1)
            return paths
        }
        let live = try pair("live")
        let other = try pair("other")
        var listener = ListenerConfiguration(name: "https", address: .inet(host: "127.0.0.1", port: 8443))
        listener.tls = TLSSettings(certificates: [CertificateConfiguration(certificatePath: live.0, keyPath: live.1)])
        let configuration = FerryConfiguration(listeners: [listener])
        var watch = CertificateWatch()
        watch.reset(configuration)
        #expect(watch.check(configuration) == .none)
        func replace(_ target: String, with source: String) throws {
            let temporary = target + ".new"
            try FileManager.default.copyItem(atPath: source, toPath: temporary)
            #expect(rename(temporary, target) == 0)
        }
        // The other pair, both files: seen, then applied once it held still for a tick.
        try replace(live.1, with: other.1)
        try replace(live.0, with: other.0)
        #expect(watch.check(configuration) == .none, "first sight: wait a tick")
        #expect(watch.check(configuration) == .apply)
        #expect(watch.check(configuration) == .none)
        // Only the certificate replaced: it no longer matches the key; refused, and said once.
        let third = try pair("third")
        try replace(live.0, with: third.0)
        #expect(watch.check(configuration) == .none)
        guard case .refuse(let reason) = watch.check(configuration) else {
            Issue.record("a mismatched pair must be refused")
            return
        }
        #expect(reason.contains("does not match"), "\(reason)")
        #expect(watch.check(configuration) == .none, "not reported again")
        // The key follows: the pair is whole again and applied.
        try replace(live.1, with: third.1)
        #expect(watch.check(configuration) == .none)
        #expect(watch.check(configuration) == .apply)
    }
}
