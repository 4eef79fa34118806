module github.com/dgzoo/dgzoo/bindings/go

go 1.19
