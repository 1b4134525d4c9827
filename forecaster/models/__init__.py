"""The forecasting models `forecaster.forecaster.LSTMForecaster` orchestrates, behind one interface
(`base.ForecastModel`): the network (`network`), the statistical methods (`statistical`), seasonal
naive (`naive`), and the forecaster's fitted state (`state`) that save and load write and read."""
