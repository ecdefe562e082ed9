import Testing

@testable import FerryTLS

@Suite struct FerryTLSModuleTests {
    @Test func moduleLinks() {
        #expect(!String(describing: FerryTLSModule.self).isEmpty)
    }
}
