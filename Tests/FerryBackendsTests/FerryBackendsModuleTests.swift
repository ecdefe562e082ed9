import Testing

@testable import FerryBackends

@Suite struct FerryBackendsModuleTests {
    @Test func moduleLinks() {
        #expect(!String(describing: FerryBackendsModule.self).isEmpty)
    }
}
