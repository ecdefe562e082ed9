import Crypto
import Foundation
import SwiftASN1
import Testing
import X509

@testable import FerryACME

@Suite struct ACMECertificatesTests {
    @Test func theCSRNamesEveryNameAndIsSignedByTheKey() throws {
        let key = P256.Signing.PrivateKey()
        let names = ["a.example.org", "b.example.org"]
        let der = try ACMECertificates.csr(names: names, key: key)
        let csr = try CertificateSigningRequest(derEncoded: der)
        #expect(csr.subject.description == "CN=a.example.org")
        #expect(csr.publicKey == Certificate.PublicKey(key.publicKey))
        #expect(csr.publicKey.isValidSignature(csr.signature, for: csr))
        let request = try #require(try csr.attributes.extensionRequest)
        let sans = try #require(try request.extensions.subjectAlternativeNames)
        #expect(Array(sans) == names.map { GeneralName.dnsName($0) })
        // And as OpenSSL reads it (the CA is not Swift).
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl") {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("csr-\(UUID()).der").path
            defer { try? FileManager.default.removeItem(atPath: path) }
            FileManager.default.createFile(atPath: path, contents: Data(der))
            let (status, text) = try Self.run(
                "/usr/bin/openssl", ["req", "-inform", "DER", "-in", path, "-verify", "-noout", "-text"])
            #expect(status == 0, "\(text)")
            #expect(text.contains("DNS:a.example.org, DNS:b.example.org"), "\(text)")
        }
    }

    /// RFC 8737 §3: one SAN, the name; the acmeIdentifier extension critical, holding the
    /// SHA-256 of the key authorization as an OCTET STRING.
    @Test func theTLSALPNChallengeCertificateCarriesTheKeyAuthorizationDigest() throws {
        let pem = try ACMECertificates.tlsALPNChallenge(name: "x.example.org", keyAuthorization: "token.thumb")
        let documents = try PEMDocument.parseMultiple(pemString: pem)
        #expect(documents.map(\.discriminator) == ["CERTIFICATE", "PRIVATE KEY"])
        let certificate = try Certificate(derEncoded: documents[0].derBytes)
        let sans = try #require(try certificate.extensions.subjectAlternativeNames)
        #expect(Array(sans) == [.dnsName("x.example.org")])
        let identifier = try #require(certificate.extensions[oid: [1, 3, 6, 1, 5, 5, 7, 1, 31]])
        #expect(identifier.critical)
        let digest = Array(SHA256.hash(data: Data("token.thumb".utf8)))
        #expect(Array(identifier.value) == [0x04, 0x20] + digest)
        let key = try P256.Signing.PrivateKey(
            pemRepresentation: String(pem[pem.range(of: "-----BEGIN PRIVATE KEY")!.lowerBound...]))
        #expect(certificate.publicKey == Certificate.PublicKey(key.publicKey))
    }

    @Test func theLeafOfAChainGivesItsDatesAndNames() throws {
        let pem = try ACMECertificates.tlsALPNChallenge(
            name: "y.example.org", keyAuthorization: "k", now: Date(timeIntervalSince1970: 1_800_000_000))
        let leaf = try ACMECertificates.leaf(ofChain: pem)
        #expect(leaf.names == ["y.example.org"])
        #expect(leaf.selfSigned)
        #expect(leaf.notBefore == Date(timeIntervalSince1970: 1_800_000_000 - 3600))
        #expect(leaf.notAfter == Date(timeIntervalSince1970: 1_800_000_000 + 7 * 86400))
        #expect(throws: (any Error).self) { try ACMECertificates.leaf(ofChain: "no certificate") }
    }

    static func run(_ path: String, _ arguments: [String]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
