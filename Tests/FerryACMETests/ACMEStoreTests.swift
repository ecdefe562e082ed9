import Foundation
import Testing

@testable import FerryACME

@Suite struct ACMEStoreTests {
    static func temporaryRoot() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("ferry-acme-store-\(UUID().uuidString.prefix(8))")
            .path
    }

    static func mode(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int) ?? -1
    }

    @Test func theAccountKeyIsCreatedOnceAndKeptPrivate() throws {
        let root = Self.temporaryRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = ACMEStore(root: root)
        let directory = "https://ca.test:14000/dir"
        let (first, url) = try store.account(for: directory)
        #expect(url == nil)
        let keyPath = store.accountDirectory(for: directory) + "/key.pem"
        #expect(Self.mode(keyPath) == 0o600)
        #expect(Self.mode(store.accountDirectory(for: directory)) == 0o700)
        try store.saveAccountURL("https://ca.test/acct/1", for: directory)
        let (second, saved) = try store.account(for: directory)
        #expect(second.thumbprint == first.thumbprint)
        #expect(saved == "https://ca.test/acct/1")
        // Another CA, another account (and key).
        #expect(try store.account(for: "https://other.test/dir").key.thumbprint != first.thumbprint)
        store.forgetAccount(for: directory)
        #expect(try store.account(for: directory).url == nil)
    }

    @Test func recordsRoundTripAndACorruptOneIsRefusedAndLeftAlone() throws {
        let root = Self.temporaryRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = ACMEStore(root: root)
        #expect(try store.record(id: "https") == nil)
        var record = ACMERecord(names: ["a.test", "b.test"], directory: "https://ca.test/dir")
        record.failures = 2
        record.lastError = "rateLimited: too many"
        record.lastAttempt = Date(timeIntervalSince1970: 1_800_000_000)
        try store.save(record, id: "https")
        #expect(try store.record(id: "https") == record)
        let path = store.certificateDirectory(id: "https") + "/state.json"
        #expect(Self.mode(path) == 0o600)
        try "{ not json".write(toFile: path, atomically: true, encoding: .utf8)
        #expect {
            try store.record(id: "https")
        } throws: { error in
            "\(error)".contains(path) && "\(error)".contains("fix or remove it")
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "{ not json")
        let keyPath = store.accountDirectory(for: "https://ca.test/dir") + "/key.pem"
        try FileManager.default.createDirectory(
            atPath: store.accountDirectory(for: "https://ca.test/dir"), withIntermediateDirectories: true)
        try "garbage".write(toFile: keyPath, atomically: true, encoding: .utf8)
        #expect(throws: ACMEStoreError.self) { try store.account(for: "https://ca.test/dir") }
        #expect(try String(contentsOfFile: keyPath, encoding: .utf8) == "garbage")
    }

    @Test func installWritesKeyAndChainWithoutLeavingTemporaries() throws {
        let root = Self.temporaryRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = ACMEStore(root: root)
        let directory = store.certificateDirectory(id: "https")
        try store.install(
            chain: "CHAIN\n", key: "KEY\n", certificatePath: directory + "/fullchain.pem",
            keyPath: directory + "/key.pem", owner: nil)
        #expect(try String(contentsOfFile: directory + "/fullchain.pem", encoding: .utf8) == "CHAIN\n")
        #expect(Self.mode(directory + "/key.pem") == 0o600)
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: directory).sorted() == ["fullchain.pem", "key.pem"])
        // Parents others may pass through, the certificate directory itself closed.
        #expect(Self.mode(root) == 0o711 && Self.mode(directory) == 0o700)
    }

    @Test func challengeFilesAreWrittenOnlyForSafeTokensAndNames() throws {
        let root = Self.temporaryRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let files = ACMEChallengeFiles(directory: root, owner: nil)
        try files.publish(kind: .http01, name: "a.test", token: "Tok_en-1", keyAuthorization: "Tok_en-1.thumb")
        #expect(try String(contentsOfFile: root + "/http-01/Tok_en-1", encoding: .utf8) == "Tok_en-1.thumb")
        try files.publish(kind: .tlsALPN01, name: "a.test", token: "t", keyAuthorization: "t.thumb")
        #expect(
            try String(contentsOfFile: root + "/tls-alpn-01/a.test.pem", encoding: .utf8).contains("BEGIN CERTIFICATE"))
        for (token, name) in [("../x", "a.test"), ("a/b", "a.test"), ("", "a.test"), ("t", "../a"), ("t", "A/b")] {
            #expect(throws: ACMEError.self) {
                try files.publish(kind: .http01, name: name, token: token, keyAuthorization: "k")
            }
        }
        files.withdraw(kind: .http01, name: "a.test", token: "Tok_en-1")
        #expect(!FileManager.default.fileExists(atPath: root + "/http-01/Tok_en-1"))
    }
}
