public import Crypto
public import Foundation
import SwiftASN1
import X509

/// The certificates and requests ACME needs, built with swift-certificates: the CSR for an order,
/// the TLS-ALPN-01 challenge certificate (RFC 8737), and the dates of an issued chain.
public enum ACMECertificates {
    /// A DER CSR for `names` (the first as common name, all as DNS SANs), signed by `key`.
    public static func csr(names: [String], key: P256.Signing.PrivateKey) throws -> [UInt8] {
        let extensions = try Certificate.Extensions {
            SubjectAlternativeNames(names.map { GeneralName.dnsName($0) })
        }
        let request = try CertificateSigningRequest(
            version: .v1,
            subject: try DistinguishedName { CommonName(names[0]) },
            privateKey: Certificate.PrivateKey(key),
            attributes: CertificateSigningRequest.Attributes([
                try CertificateSigningRequest.Attribute(ExtensionRequest(extensions: extensions))
            ]),
            signatureAlgorithm: .ecdsaWithSHA256)
        var serializer = DER.Serializer()
        try serializer.serialize(request)
        return serializer.serializedBytes
    }

    /// id-pe-acmeIdentifier (RFC 8737 §6.1).
    static let acmeIdentifierOID: ASN1ObjectIdentifier = [1, 3, 6, 1, 5, 5, 7, 1, 31]

    /// The self-signed certificate a TLS-ALPN-01 validation must see for `name`: its only SAN is
    /// the name, and the critical acmeIdentifier extension holds SHA-256 of the key authorization.
    /// Returns the certificate and its key, PEM, in one text (certificate first).
    public static func tlsALPNChallenge(name: String, keyAuthorization: String, now: Date = Date()) throws -> String {
        let key = P256.Signing.PrivateKey()
        let digest = Array(SHA256.hash(data: Data(keyAuthorization.utf8)))
        var value = DER.Serializer()
        try value.serialize(ASN1OctetString(contentBytes: digest[...]))
        let extensions = try Certificate.Extensions([
            try Certificate.Extension(SubjectAlternativeNames([.dnsName(name)]), critical: false),
            Certificate.Extension(oid: acmeIdentifierOID, critical: true, value: value.serializedBytes[...]),
        ])
        let subject = try DistinguishedName { CommonName(name) }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(),
            publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(7 * 86400),
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions,
            issuerPrivateKey: Certificate.PrivateKey(key))
        return try certificate.serializeAsPEM().pemString + "\n" + key.pemRepresentation + "\n"
    }

    /// The leaf of a PEM chain: its validity and names.
    public struct Leaf: Sendable, Equatable {
        public var notBefore: Date
        public var notAfter: Date
        public var names: [String]
        public var issuer: String
        public var selfSigned: Bool
        /// RFC 9773 §4.1's certificate id: base64url(authority key identifier) "."
        /// base64url(serial number); nil without an authority key identifier.
        public var renewalInfoID: String?
    }

    public static func leaf(ofChain pem: String) throws -> Leaf {
        guard
            let first = try PEMDocument.parseMultiple(pemString: pem).first(where: { $0.discriminator == "CERTIFICATE" }
            )
        else { throw ACMEError.protocolViolation("no certificate in the chain") }
        let certificate = try Certificate(derEncoded: first.derBytes)
        let names =
            (try? certificate.extensions.subjectAlternativeNames)??.compactMap { name -> String? in
                if case .dnsName(let dns) = name { return dns }
                return nil
            } ?? []
        let authorityKey = (try? certificate.extensions.authorityKeyIdentifier)??.keyIdentifier
        return Leaf(
            notBefore: certificate.notValidBefore, notAfter: certificate.notValidAfter, names: names,
            issuer: certificate.issuer.description, selfSigned: certificate.issuer == certificate.subject,
            renewalInfoID: authorityKey.map {
                "\(Base64URL.encode($0)).\(Base64URL.encode(certificate.serialNumber.bytes))"
            })
    }
}
